package sdk

// Guest runs a plugin value natively, through the same decoding, dispatch
// and encoding as the module's WebAssembly exports. Package sdk/sdktest
// uses it to test plugins with go test; a plugin never needs it.
type Guest struct{ g *guest }

// NewGuest returns a Guest running p, as Register would make p the
// module's plugin.
func NewGuest(p any) *Guest { return &Guest{g: newGuest(p)} }

// Configure answers an encoded ConfigureRequest with an encoded
// ConfigureResponse, as the export sluice_configure does. The answer is
// valid until the next call.
func (g *Guest) Configure(req []byte) []byte {
	copy(g.g.buffer(uint32(len(req))), req)
	return g.g.configure(uint32(len(req)))
}

// Handle answers an encoded Request with an encoded Verdict, as the export
// sluice_handle does. The answer is valid until the next call.
func (g *Guest) Handle(req []byte) []byte {
	copy(g.g.buffer(uint32(len(req))), req)
	return g.g.handle(uint32(len(req)))
}
