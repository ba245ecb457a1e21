//go:build !wasip1

package sdk

// defaultImports is none natively: the typed host functions answer
// ErrNoHost until a test calls SetImports.
func defaultImports() Imports { return nil }
