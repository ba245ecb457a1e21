;; rcptlimit: a Sluice filter plugin written by hand in WebAssembly text,
;; from sdk/ABI.md alone, with no SDK. It defers the recipients of a message
;; beyond max_recipients with 452 4.5.3, which RFC 5321 lets a client read
;; as "send the rest in another transaction". See README.md.
;;
;; Build: wat2wasm rcptlimit.wat -o rcptlimit.wasm   (Debian package wabt)
(module
  ;; The version marker says we speak ABI version 1; log writes to the
  ;; gateway's log.
  (import "sluice" "abi_version_1" (func $abi_version_1))
  (import "sluice" "log" (func $log (param i32 i32 i32)))

  ;; Page 0 holds the constants below; the input buffer starts at page 1 and
  ;; grows at its end, so its address never changes (ABI.md: the host
  ;; remembers it).
  (memory (export "memory") 2)

  (global $buf i32 (i32.const 65536))
  (global $page i32 (i32.const 65536))
  ;; RFC 5321 section 4.5.3.1.8: a server must take at least 100 recipients.
  (global $max (mut i32) (i32.const 100))
  ;; The decoder's state: the next byte, the end of the message, and
  ;; whether it was malformed.
  (global $pos (mut i32) (i32.const 0))
  (global $end (mut i32) (i32.const 0))
  (global $bad (mut i32) (i32.const 0))

  ;; The setting's name.
  (data (i32.const 0) "max_recipients")
  ;; ConfigureResponse: no error, stages 1<<4 (rcpt), permissions 1<<3
  ;; (tempfail).
  (data (i32.const 32) "\00\10\08")
  ;; Verdict: continue.
  (data (i32.const 48) "\00")
  ;; Verdict: tempfail (3), code 452 (varint c4 03), enhanced 4.5.3, text.
  (data (i32.const 64) "\03\c4\03\05" "4.5.3"
    "\3d" "Too many recipients for one message, send the rest in another")
  ;; Verdict: tempfail, code 451 (varint c3 03), enhanced 4.3.0, text.
  (data (i32.const 160) "\03\c3\03\05" "4.3.0"
    "\24" "rcptlimit could not read the request")
  ;; ConfigureResponse: the configuration is refused with this text.
  (data (i32.const 224)
    "\44" "the only setting is max_recipients, a whole number from 1 to 1000000"
    "\10\08")
  ;; A log line.
  (data (i32.const 320) "too many recipients: deferred one")

  ;; _initialize runs once per instance. Calling the marker is not needed in
  ;; WebAssembly text (nothing drops an unused import), but it is harmless.
  (func (export "_initialize")
    (call $abi_version_1))

  ;; pack returns ptr and len as one i64: ptr in the high 32 bits.
  (func $pack (param $ptr i32) (param $len i32) (result i64)
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
      (i64.extend_i32_u (local.get $len))))

  ;; start decoding the n bytes at the buffer; a message that does not fit
  ;; in memory is malformed.
  (func $begin (param $n i32)
    (global.set $pos (global.get $buf))
    (global.set $end (i32.add (global.get $buf) (local.get $n)))
    (global.set $bad
      (i32.or
        (i32.lt_u (global.get $end) (global.get $buf))
        (i32.gt_u (global.get $end)
          (i32.mul (memory.size) (global.get $page))))))

  ;; uvarint reads an unsigned LEB128 varint. A field missing at the end
  ;; reads as 0; a varint cut short, or longer than five bytes (no field we
  ;; read is that large), is malformed.
  (func $uvarint (result i32)
    (local $v i32) (local $shift i32) (local $b i32)
    (if (i32.ge_u (global.get $pos) (global.get $end))
      (then (return (i32.const 0))))
    (loop $next
      (if (i32.or
            (i32.ge_u (global.get $pos) (global.get $end))
            (i32.ge_u (local.get $shift) (i32.const 35)))
        (then (global.set $bad (i32.const 1)) (return (i32.const 0))))
      (local.set $b (i32.load8_u (global.get $pos)))
      (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
      (local.set $v
        (i32.or (local.get $v)
          (i32.shl (i32.and (local.get $b) (i32.const 0x7f)) (local.get $shift))))
      (local.set $shift (i32.add (local.get $shift) (i32.const 7)))
      (br_if $next (i32.ge_u (local.get $b) (i32.const 0x80))))
    (local.get $v))

  ;; bytes reads a string's length and skips it, returning its start; a
  ;; length past the end is malformed.
  (func $bytes (result i32)
    (local $n i32) (local $start i32)
    (local.set $n (call $uvarint))
    (local.set $start (global.get $pos))
    (if (i32.gt_u (local.get $n) (i32.sub (global.get $end) (global.get $pos)))
      (then (global.set $bad (i32.const 1)) (return (global.get $pos))))
    (global.set $pos (i32.add (global.get $pos) (local.get $n)))
    (local.get $start))

  (func (export "sluice_buffer") (param $size i32) (result i32)
    (local $pages i32)
    ;; The buffer must reach $buf + size: grow memory to that many pages.
    (if (i32.gt_u (local.get $size) (i32.const 0x7ffeffff))
      (then unreachable))
    (local.set $pages
      (i32.div_u
        (i32.add (i32.add (global.get $buf) (local.get $size)) (i32.const 65535))
        (global.get $page)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq
              (memory.grow (i32.sub (local.get $pages) (memory.size)))
              (i32.const -1))
          (then unreachable))))
    (global.get $buf))

  ;; ConfigureRequest: version, name, hostname, config (TOML text).
  (func (export "sluice_configure") (param $n i32) (result i64)
    (local $cfg i32)
    (call $begin (local.get $n))
    (drop (call $uvarint))
    (drop (call $bytes))
    (drop (call $bytes))
    (local.set $cfg (call $bytes))
    (if (i32.eqz (global.get $bad))
      (then
        ;; From here on the decoder reads the TOML text.
        (global.set $end (global.get $pos))
        (global.set $pos (local.get $cfg))
        (call $settings)))
    (if (global.get $bad)
      (then (return (call $pack (i32.const 224) (i32.const 71)))))
    (call $pack (i32.const 32) (i32.const 3)))

  ;; settings reads the TOML text between $pos and $end: nothing but blank
  ;; lines and comments, or the one line `max_recipients = N`. Anything
  ;; else (another key, a string, a table) refuses the configuration, as
  ;; Sluice plugins refuse unknown keys.
  (func $settings
    (local $n i32) (local $digits i32) (local $i i32) (local $c i32)
    (call $blank)
    (if (i32.ge_u (global.get $pos) (global.get $end))
      (then (return)))
    ;; the key
    (if (i32.lt_u (i32.sub (global.get $end) (global.get $pos)) (i32.const 14))
      (then (global.set $bad (i32.const 1)) (return)))
    (loop $key
      (if (i32.ne
            (i32.load8_u (i32.add (global.get $pos) (local.get $i)))
            (i32.load8_u (local.get $i)))
        (then (global.set $bad (i32.const 1)) (return)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $key (i32.lt_u (local.get $i) (i32.const 14))))
    (global.set $pos (i32.add (global.get $pos) (i32.const 14)))
    ;; = 
    (call $spaces)
    (if (i32.or
          (i32.ge_u (global.get $pos) (global.get $end))
          (i32.ne (i32.load8_u (global.get $pos)) (i32.const 0x3d)))
      (then (global.set $bad (i32.const 1)) (return)))
    (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
    (call $spaces)
    ;; the number, 1 to 1000000
    (block $done
      (loop $digit
        (br_if $done (i32.ge_u (global.get $pos) (global.get $end)))
        (local.set $c (i32.sub (i32.load8_u (global.get $pos)) (i32.const 0x30)))
        (br_if $done (i32.gt_u (local.get $c) (i32.const 9)))
        (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10)) (local.get $c)))
        (if (i32.gt_u (local.get $n) (i32.const 1000000))
          (then (global.set $bad (i32.const 1)) (return)))
        (local.set $digits (i32.add (local.get $digits) (i32.const 1)))
        (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
        (br $digit)))
    (if (i32.or (i32.eqz (local.get $digits)) (i32.eqz (local.get $n)))
      (then (global.set $bad (i32.const 1)) (return)))
    ;; and nothing after it
    (call $blank)
    (if (i32.lt_u (global.get $pos) (global.get $end))
      (then (global.set $bad (i32.const 1)) (return)))
    (global.set $max (local.get $n)))

  ;; spaces skips spaces and tabs.
  (func $spaces
    (local $c i32)
    (block $done
      (loop $more
        (br_if $done (i32.ge_u (global.get $pos) (global.get $end)))
        (local.set $c (i32.load8_u (global.get $pos)))
        (br_if $done
          (i32.and
            (i32.ne (local.get $c) (i32.const 0x20))
            (i32.ne (local.get $c) (i32.const 0x09))))
        (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
        (br $more))))

  ;; blank skips whitespace, line ends and comments (# to the end of the
  ;; line).
  (func $blank
    (local $c i32)
    (block $done
      (loop $more
        (call $spaces)
        (br_if $done (i32.ge_u (global.get $pos) (global.get $end)))
        (local.set $c (i32.load8_u (global.get $pos)))
        (if (i32.eq (local.get $c) (i32.const 0x23))
          (then
            (block $eol
              (loop $comment
                (br_if $eol (i32.ge_u (global.get $pos) (global.get $end)))
                (br_if $eol (i32.eq (i32.load8_u (global.get $pos)) (i32.const 0x0a)))
                (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
                (br $comment)))
            (br $more)))
        (br_if $done
          (i32.and
            (i32.ne (local.get $c) (i32.const 0x0a))
            (i32.ne (local.get $c) (i32.const 0x0d))))
        (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
        (br $more))))

  ;; Request: stage, session_id, client_ip, client_name, helo, tls,
  ;; mail_from, utf8, rcpts (the recipients accepted so far), and more
  ;; fields that this plugin does not need.
  (func (export "sluice_handle") (param $n i32) (result i64)
    (local $stage i32) (local $rcpts i32)
    (call $begin (local.get $n))
    (local.set $stage (call $uvarint))
    (drop (call $bytes)) ;; session_id
    (drop (call $bytes)) ;; client_ip
    (drop (call $bytes)) ;; client_name
    (drop (call $bytes)) ;; helo
    (drop (call $uvarint)) ;; tls
    (drop (call $bytes)) ;; mail_from
    (drop (call $uvarint)) ;; utf8
    (local.set $rcpts (call $uvarint))
    (if (global.get $bad)
      (then (return (call $pack (i32.const 160) (i32.const 46)))))
    ;; The host calls us at rcpt only; answer anything else with continue.
    (if (i32.and
          (i32.eq (local.get $stage) (i32.const 4))
          (i32.ge_u (local.get $rcpts) (global.get $max)))
      (then
        (call $log (i32.const 0) (i32.const 320) (i32.const 33))
        (return (call $pack (i32.const 64) (i32.const 71)))))
    (call $pack (i32.const 48) (i32.const 1)))
)
