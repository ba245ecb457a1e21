package main

import (
	"strings"
	"testing"

	"github.com/sluice-mail/sluice/sdk"
	"github.com/sluice-mail/sluice/sdk/abi"
	"github.com/sluice-mail/sluice/sdk/sdktest"
)

// BenchmarkScan is the data stage on a message with a 1 MiB attachment
// (base64) after a text part: the plugin reads the whole body.
func BenchmarkScan(b *testing.B) {
	attachment := strings.Repeat(strings.Repeat("QUJD", 19)+"\r\n", 1<<20/78)
	msg := mixed("Content-Type: text/plain\r\n\r\nhello",
		"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=big.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"+attachment)
	p := sdktest.New(b, &plugin{}, "")
	p.SetMessage([]byte(msg))
	req := &sdk.Request{Stage: abi.StageData}
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if v := p.Handle(b, req); v.Action != abi.Continue {
			b.Fatal(sdktest.Describe(v))
		}
	}
}
