package graph

// What the tests outside the package (package graph_test: those that run the families' fixtures,
// whose packages import this one) use of the tests' helpers inside it.
var (
	LoadFixture      = load
	LoadFixtureModel = loadModel
	LoadFixtureOn    = loadOn
)

// CopyCaches sets Engine.copyCaches (the path shared caches are tested against); ShareCaches is
// Engine.shareCaches.
func CopyCaches(e *Engine, copy bool) { e.copyCaches = copy }

func ShareCaches(e *Engine) bool { return e.shareCaches() }
