//go:build !wasip1

package sdk

import (
	"context"
	"log/slog"
)

// Log writes msg to the log at the given level (abi.LogDebug, abi.LogInfo,
// abi.LogWarn or abi.LogError). In a plugin it goes to the gateway's log,
// tagged with the plugin's name; in a native test it goes to slog's default
// logger.
func Log(level int32, msg string) {
	slog.Log(context.Background(), slog.Level(level), msg)
}
