package smtpd

// sessionStack is how much stack a session's goroutine takes at once,
// when the session starts. go-smtp starts a goroutine for every
// connection, and the runtime gives it a small stack that doubles each
// time a call needs more, copying the whole stack and adjusting every
// frame in it. A forwarded message needed such growths deep in a call (at
// MAIL, then inside the plugin call at RCPT, whose WebAssembly engine
// needs the most), which cost about 5% of the CPU per forwarded message
// (bench/load.sh -P forward, 4 KiB, 32 sessions); grown once where the
// stack is still shallow, it costs a third of that. 16 KiB is enough for
// the router plugin's call (no growth is left in the profile) and is the
// largest size the runtime keeps ready per processor: a larger one comes
// from the heap, under a lock. The memory is what the session would have
// taken at its first plugin call anyway.
const sessionStack = 16 << 10

// growStack makes the calling goroutine's stack sessionStack bytes, if it
// is smaller: a frame of nearly that size makes the runtime grow the stack
// to fit it, in one step.
//
//go:noinline
func growStack() {
	var frame [sessionStack - 4<<10]byte // the rest is for the frames above
	keep(frame[:])
}

// keep stops the compiler from dropping growStack's frame as unused.
//
//go:noinline
func keep([]byte) {}
