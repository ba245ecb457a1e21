// Command clock is a test plugin for sluice plugin check: its answer is
// the wall-clock time, in microseconds, as a plugin that says how long is
// left (greylist's "try again in 300 seconds") computes from it.
package main

import (
	"time"

	"github.com/sluice-mail/sluice/sdk"
)

type clock struct{}

func (clock) Helo(*sdk.Request) sdk.Verdict {
	return sdk.Continue().Finding("NOW", float64(time.Now().UnixMicro()))
}

func init() { sdk.Register(clock{}) }

func main() {}
