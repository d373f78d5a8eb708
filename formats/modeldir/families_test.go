package modeldir_test

// GPT-NeoX and the lookup embedder, the fixtures' families, registered for every test of the
// package: one external test file imports them (the package's own tests cannot: the families
// import packages that import this one). The other families stay out: TestWithoutTheFamily checks
// what a program built without them says.
import (
	_ "github.com/btconvert/btconvert/families/gptneox"
	_ "github.com/btconvert/btconvert/families/lookup"
)
