// File helpers: the few POSIX calls the converter makes besides mmap (which
// GGUF.MappedFile does). Platform #if lives here only.

import GGUF

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

enum Files {
    static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// The size in bytes of the file at `path` (nil when it cannot be stat'ed).
    static func size(_ path: String) -> Int? {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : nil
    }

    /// Checks that `path` is a folder: `.notAFolder` when it is a file, `.missingFile` when absent.
    static func requireFolder(_ path: String, missing: String, expected: String) throws(ConvertError) {
        if isDirectory(path) { return }
        if exists(path) { throw .notAFolder(path: path, expected: expected) }
        throw .missingFile(path: path, what: missing)
    }

    static func join(_ dir: String, _ name: String) -> String {
        dir.hasSuffix("/") ? dir + name : dir + "/" + name
    }

    /// The last path component, ignoring trailing slashes.
    static func baseName(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1, p.hasSuffix("/") { p = p.dropLast() }
        if let slash = p.lastIndex(of: "/") { return String(p[p.index(after: slash)...]) }
        return String(p)
    }

    /// Maps a whole file (errors name the file).
    static func map(_ path: String) throws(ConvertError) -> MappedFile {
        do { return try MappedFile(path: path) } catch {
            if case .cannotOpen(_, let reason) = error { throw .cannotRead(path: path, reason: reason) }
            throw .gguf(error)
        }
    }

    /// Reads and parses a JSON file; `what` explains the file in the missing-file error.
    static func readJSON(_ path: String, what: String) throws(ConvertError) -> JSON {
        guard exists(path) else { throw .missingFile(path: path, what: what) }
        let file = try map(path)
        do { return try JSON.parse(file.bytes) } catch { throw .badJSON(path: path, reason: error.description) }
    }

    /// Drops the pages of `range` (bytes of `file`) from this process's resident
    /// set. The kernel keeps them in its page cache; only our RSS shrinks. This is
    /// what keeps a streaming conversion's peak RSS at one tensor, not the model.
    static func release(_ file: MappedFile, _ range: Range<Int>) {
        guard let base = file.base, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = range.lowerBound / page * page
        let end = min(file.size, range.upperBound)
        guard end > start else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }
}
