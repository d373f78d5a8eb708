//go:build race

package testfix

// Race is true in a build with the race detector, whose shadow memory inflates every resident
// memory figure a test could measure.
const Race = true
