// Atomic output: every file Wren writes goes to a temporary file beside its
// destination (`.NAME.wren-tmp-PID`), is fsynced, and is renamed over the
// destination only when complete. A destination that exists and is not a regular
// file (a device, FIFO or directory) is refused, so `-o /dev/null --force` never
// replaces a device node. Temporary files are registered so a signal handler can
// remove them (`TempFiles.removeAll`), and ones left by a killed process are
// removed by the next write into the same directory (`TempFiles.removeStale`).

import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Checks that `path` may be written: refuses anything that exists and is not a regular
/// file (or a directory where `directory` is true), and an existing path unless `overwrite`.
public func checkOutputPath(_ path: String, overwrite: Bool, directory: Bool = false) throws {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }   // absent: fine
    let type = st.st_mode & S_IFMT
    if directory {
        guard type == S_IFDIR else { throw FormatError.invalid(path: path, field: "output", reason: "exists and is not a directory") }
    } else {
        guard type == S_IFREG else {
            let what = type == S_IFDIR ? "a directory" : type == S_IFLNK ? "a symbolic link" : type == S_IFCHR || type == S_IFBLK ? "a device" : type == S_IFIFO ? "a FIFO" : "not a regular file"
            throw FormatError.invalid(path: path, field: "output", reason: "is \(what); Wren replaces only regular files")
        }
    }
    if !overwrite { throw FormatError.outputExists(path: path) }
}

/// The temporary files this process has open for writing, for cleanup on a signal.
public enum TempFiles {
    static let lock = NSLock()
    nonisolated(unsafe) static var live: Set<String> = []
    public static let marker = ".wren-tmp-"

    static func add(_ p: String) { lock.lock(); live.insert(p); lock.unlock() }
    static func remove(_ p: String) { lock.lock(); live.remove(p); lock.unlock() }

    /// Removes every temporary file (and directory) this process is still writing. Called
    /// by the CLI on SIGINT/SIGTERM and before exiting on a closed stdout.
    public static func removeAll() {
        lock.lock()
        let paths = live
        live.removeAll()
        lock.unlock()
        for p in paths { try? FileManager.default.removeItem(atPath: p) }
    }

    /// A temporary name beside `path`: `DIR/.NAME.wren-tmp-PID`.
    public static func name(for path: String) -> String {
        let url = URL(fileURLWithPath: path)
        return url.deletingLastPathComponent().path + "/." + url.lastPathComponent + marker + String(getpid())
    }

    /// Removes `.NAME.wren-tmp-PID` entries in `dir` whose process no longer exists
    /// (left by a kill -9); returns the paths removed.
    @discardableResult
    public static func removeStale(in dir: String) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        var removed: [String] = []
        for n in names where n.hasPrefix(".") {
            guard let r = n.range(of: marker, options: .backwards), let pid = Int32(n[r.upperBound...]), pid > 0 else { continue }
            if pid == getpid() { continue }
            if kill(pid, 0) == -1 && errno == ESRCH {
                let p = dir + "/" + n
                if (try? FileManager.default.removeItem(atPath: p)) != nil { removed.append(p) }
            }
        }
        return removed
    }
}

/// One file being written atomically. Write with `write`/`pwrite`, then `commit()`;
/// dropping it uncommitted (an error thrown on the way) removes the temporary file.
public final class AtomicWrite {
    public let path: String
    public let tempPath: String
    let overwrite: Bool
    let fd: Int32
    var finished = false

    /// - Throws: `FormatError` when the destination is not a regular file, exists without
    ///   `overwrite`, or the temporary file cannot be created.
    public init(path: String, overwrite: Bool) throws {
        try checkOutputPath(path, overwrite: overwrite)
        self.path = path
        self.overwrite = overwrite
        tempPath = TempFiles.name(for: path)
        TempFiles.removeStale(in: URL(fileURLWithPath: path).deletingLastPathComponent().path)
        TempFiles.add(tempPath)
        fd = open(tempPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let e = errno
            TempFiles.remove(tempPath)
            throw FormatError.io(path: tempPath, operation: "create", errno: e)
        }
    }

    deinit { if !finished { abandon() } }

    /// Appends bytes at the current position.
    public func write(_ buf: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < buf.count {
            let n = Foundation.write(fd, buf.baseAddress! + done, buf.count - done)
            if n < 0 { if errno == EINTR { continue }; throw FormatError.io(path: tempPath, operation: "write", errno: errno) }
            done += n
        }
    }

    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    /// Writes bytes at `offset`.
    public func pwrite(_ buf: UnsafeRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < buf.count {
            let n = Foundation.pwrite(fd, buf.baseAddress! + done, buf.count - done, off_t(offset + done))
            if n < 0 { if errno == EINTR { continue }; throw FormatError.io(path: tempPath, operation: "write", errno: errno) }
            done += n
        }
    }

    public func truncate(to size: Int) throws {
        guard ftruncate(fd, off_t(size)) == 0 else { throw FormatError.io(path: tempPath, operation: "ftruncate", errno: errno) }
    }

    /// fsyncs and closes the temporary file, renames it over `path` (checking the destination
    /// again) and fsyncs the directory.
    public func commit() throws {
        precondition(!finished, "AtomicWrite committed twice")
        guard fsync(fd) == 0 else { throw FormatError.io(path: tempPath, operation: "fsync", errno: errno) }
        finished = true
        defer { TempFiles.remove(tempPath) }
        guard close(fd) == 0 else {
            let e = errno
            unlink(tempPath)
            throw FormatError.io(path: tempPath, operation: "close", errno: e)
        }
        do { try checkOutputPath(path, overwrite: overwrite) } catch { unlink(tempPath); throw error }
        guard rename(tempPath, path) == 0 else {
            let e = errno
            unlink(tempPath)
            throw FormatError.io(path: path, operation: "rename", errno: e)
        }
        let dfd = open(URL(fileURLWithPath: path).deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }

    /// Closes and removes the temporary file.
    public func abandon() {
        guard !finished else { return }
        finished = true
        close(fd)
        unlink(tempPath)
        TempFiles.remove(tempPath)
    }
}

/// A directory written atomically: files go into `tempPath` (`.NAME.wren-tmp-PID` beside
/// `path`), and `commit()` renames it into place — exchanging it with an existing directory
/// in one step (renameat2 RENAME_EXCHANGE), then removing the old contents.
public final class DirectoryBuild {
    public let path: String
    public let tempPath: String
    var finished = false

    /// - Parameter replaceable: the file names an existing directory may hold to be replaced
    ///   (with `overwrite`); anything else in it is refused, so no user file is ever deleted.
    public init(path: String, overwrite: Bool, replaceable: Set<String>) throws {
        var st = stat()
        if lstat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFDIR else { throw FormatError.invalid(path: path, field: "output", reason: "exists and is not a directory") }
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            if !names.isEmpty {
                guard overwrite else { throw FormatError.outputExists(path: path) }
                if let other = names.sorted().first(where: { !replaceable.contains($0) }) {
                    throw FormatError.invalid(path: path, field: "output", reason: "holds \(other), which this command does not write; refusing to replace the directory")
                }
            }
        }
        self.path = path
        tempPath = TempFiles.name(for: path)
        let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try? FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        TempFiles.removeStale(in: parent)
        TempFiles.add(tempPath)
        try? FileManager.default.removeItem(atPath: tempPath)
        guard mkdir(tempPath, 0o755) == 0 else {
            let e = errno
            TempFiles.remove(tempPath)
            throw FormatError.io(path: tempPath, operation: "mkdir", errno: e)
        }
    }

    deinit { if !finished { abandon() } }

    public func commit() throws {
        precondition(!finished)
        finished = true
        defer { TempFiles.remove(tempPath) }
        if rename(tempPath, path) == 0 { return }
        guard errno == ENOTEMPTY || errno == EEXIST else {
            let e = errno
            try? FileManager.default.removeItem(atPath: tempPath)
            throw FormatError.io(path: path, operation: "rename", errno: e)
        }
        // The destination exists (checked replaceable in init): swap the two in one step.
        guard let exchange = renameExchange, exchange(AT_FDCWD, tempPath, AT_FDCWD, path, 2 /* RENAME_EXCHANGE */) == 0 else {
            let e = errno
            try? FileManager.default.removeItem(atPath: tempPath)
            throw FormatError.io(path: path, operation: "rename (exchange)", errno: e)
        }
        try? FileManager.default.removeItem(atPath: tempPath)   // now the old directory
    }

    public func abandon() {
        guard !finished else { return }
        finished = true
        try? FileManager.default.removeItem(atPath: tempPath)
        TempFiles.remove(tempPath)
    }
}

/// glibc's renameat2 (Swift's Glibc module hides it behind _GNU_SOURCE), looked up at run time.
nonisolated(unsafe) let renameExchange: (@convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32)? = {
    guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "renameat2") else { return nil }
    return unsafeBitCast(sym, to: (@convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32).self)
}()

/// Writes small files (JSON, safetensors) atomically: temp file, fsync, rename.
public enum AtomicFile {
    public static func write(_ bytes: [UInt8], to path: String, overwrite: Bool) throws {
        let w = try AtomicWrite(path: path, overwrite: overwrite)
        try w.write(bytes)
        try w.commit()
    }
}

/// An exclusive lock on a directory (flock on `DIR/.wren-lock`), so two processes never
/// write into the same output directory at once. Released by `release()` or when the
/// process dies (the kernel drops flocks with the descriptor).
public final class DirectoryLock {
    let fd: Int32
    public let path: String

    public init(_ dir: String) throws {
        path = dir + "/.wren-lock"
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FormatError.io(path: path, operation: "open", errno: errno) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let e = errno
            var buf = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buf, 31, 0)
            close(fd)
            if e == EWOULDBLOCK {
                let holder = n > 0 ? String(decoding: buf[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "?"
                throw FormatError.invalid(path: dir, field: "output directory", reason: "in use by another wren process (pid \(holder)); wait for it or choose another directory")
            }
            throw FormatError.io(path: path, operation: "flock", errno: e)
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    public func release() {
        close(fd)
    }
}
