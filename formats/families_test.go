package formats_test

// The fixtures' families, registered for every test of the package: one external test file
// imports them (the package's own tests cannot: the families import packages that may import this
// one).
import (
	_ "github.com/btconvert/btconvert/families/gptneox"
	_ "github.com/btconvert/btconvert/families/lookup"
	_ "github.com/btconvert/btconvert/families/roberta"
	_ "github.com/btconvert/btconvert/families/t5"
)
