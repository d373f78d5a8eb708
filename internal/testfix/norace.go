//go:build !race

package testfix

// Race is true in a build with the race detector (see race.go).
const Race = false
