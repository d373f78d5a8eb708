package modeldir_test

// GPT-NeoX, the fixtures' family, registered for every test of the package: one external test file
// imports it (the package's own tests cannot: the family imports packages that import this one).
// The other families stay out: TestWithoutTheFamily checks what a program built without them says.
import _ "github.com/btconvert/btconvert/families/gptneox"
