// Standard streams, treated as the hostile places they are. Every byte the CLI
// prints goes through `Std`, which writes with write(2) and turns failures into
// a clean exit instead of a trap inside FileHandle:
//   - stdout's reader went away (EPIPE, e.g. `wren run ... | head -c 10`): exit 0,
//     as `head`'s upstream does — SIGPIPE is ignored so this is an error we see;
//   - stdout full, closed or broken otherwise (ENOSPC, EBADF, EIO): a message on
//     stderr and exit 1;
//   - stderr failing (closed, full, reader gone): progress and messages are
//     dropped, the command carries on and its exit code still tells the outcome.
// Descriptors 0–2 found closed at start get /dev/null, so no file Wren opens can
// land on them; a stdout closed at start still counts as closed. SIGINT and
// SIGTERM remove the temporary files of unfinished writes, then end the process
// with the signal as usual (in the commands that write files). `print` is shadowed in this module so that every
// print goes through the same checks.

import Foundation
import WrenFormat

enum Std {
    nonisolated(unsafe) static var closedAtStart: Set<Int32> = []
    nonisolated(unsafe) static var signalSources: [DispatchSourceSignal] = []

    /// Call once at start, before anything is opened or printed.
    static func prepare() {
        signal(SIGPIPE, SIG_IGN)
        for fd: Int32 in 0...2 where fcntl(fd, F_GETFD) == -1 && errno == EBADF {
            closedAtStart.insert(fd)
            let nfd = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY)
            if nfd >= 0 && nfd != fd { dup2(nfd, fd); close(nfd) }
        }
    }

    /// The signal being handled (0: none): a command that fails meanwhile waits for it.
    nonisolated(unsafe) static var dyingSignal: Int32 = 0

    /// For commands that write files (convert, export, merge, finetune): on SIGINT or SIGTERM,
    /// remove the temporary files of unfinished writes, then end by that signal as usual.
    /// (Chat keeps its own SIGINT handler: Ctrl-C stops a reply there.)
    static func removeTemporaryFilesOnSignals() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            src.setEventHandler {
                dyingSignal = sig
                TempFiles.removeAll()
                dieBySignal()
            }
            src.resume()
            signalSources.append(src)
        }
    }

    /// Ends the process by `dyingSignal` (the default action, so the parent sees the signal).
    static func dieBySignal() -> Never {
        signal(dyingSignal, SIG_DFL)
        kill(getpid(), dyingSignal)
        while true { pause() }
    }

    /// Writes to stdout; on failure exits (0 when the reader went away, else 1 with a message).
    static func out(_ bytes: UnsafeRawBufferPointer) {
        if closedAtStart.contains(1) { failOut(EBADF) }
        if let e = writeAll(1, bytes) { failOut(e) }
    }

    static func out(_ s: String) { var s = s; s.withUTF8 { out(UnsafeRawBufferPointer($0)) } }
    static func out(_ d: Data) { d.withUnsafeBytes { out($0) } }

    /// Writes to stderr; failures are ignored (there is nowhere left to report them).
    static func err(_ s: String) {
        if closedAtStart.contains(2) { return }
        var s = s
        _ = s.withUTF8 { writeAll(2, UnsafeRawBufferPointer($0)) }
    }

    /// write(2) until done; the errno of a failure, or nil.
    static func writeAll(_ fd: Int32, _ b: UnsafeRawBufferPointer) -> Int32? {
        var done = 0
        while done < b.count {
            let n = write(fd, b.baseAddress! + done, b.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            done += n
        }
        return nil
    }

    static func failOut(_ e: Int32) -> Never {
        if dyingSignal != 0 { dieBySignal() }
        TempFiles.removeAll()
        if e == EPIPE { exit(0) }
        err("wren: error: writing to standard output failed: \(String(cString: strerror(e)))\n")
        exit(1)
    }

    /// All of stdin; throws on a read error (a directory, EIO) instead of trapping.
    static func readAll() throws -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n == 0 { return out }
            if n < 0 {
                if errno == EINTR { continue }
                throw CLIError(message: "reading standard input failed: \(String(cString: strerror(errno)))")
            }
            out += buf[..<n]
        }
    }
}

/// Lines of stdin as raw bytes (no UTF-8 repair: the caller decides what invalid bytes mean).
struct StdinLines {
    var buffer: [UInt8] = []
    var start = 0
    var eof = false

    /// The next line without its "\n" (and a trailing "\r"), or nil at the end.
    mutating func next() throws -> [UInt8]? {
        while true {
            if let nl = buffer[start...].firstIndex(of: 0x0a) {
                var line = Array(buffer[start..<nl])
                start = nl + 1
                if line.last == 0x0d { line.removeLast() }
                return line
            }
            if eof {
                guard start < buffer.count else { return nil }
                let line = Array(buffer[start...])
                start = buffer.count
                return line
            }
            buffer.removeFirst(start)
            start = 0
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            let n = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CLIError(message: "reading standard input failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { eof = true } else { buffer += chunk[..<n] }
        }
    }
}

/// `print` for this module: through `Std.out`, so a full or closed stdout ends the
/// command cleanly instead of being ignored.
func print(_ items: Any..., separator: String = " ", terminator: String = "\n") {
    Std.out(items.map { "\($0)" }.joined(separator: separator) + terminator)
}
