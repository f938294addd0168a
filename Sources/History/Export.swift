// Export of interactions as CSV (RFC 4180, with a header) or JSON Lines.
//
// Rows come in profile-name order, then time order with ties in insertion
// order: the order recent() uses. The CSV re-imports with
//   ImportFormat.csv(CSVMapping(profileColumn: "profile", itemColumn: "item",
//                    timeColumn: "timestamp", valueColumn: "value", kindColumn: "kind"))
// and gives the same histories (and digests) in a new store.

import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The layout of an export.
public enum ExportFormat: String, Hashable, Sendable, CaseIterable {
    /// Header `id,profile,item,kind,value,timestamp`; an empty value means none.
    case csv
    /// One JSON object a line: `{"id":1,"profile":"196","item":"242","kind":"rating","value":3,"timestamp":881250949}`.
    case jsonl
}

extension HistoryStore {
    /// Writes the interactions of `profile` (nil: of all profiles) to `write`,
    /// which receives whole lines in chunks of about 64 KiB. All rows come from
    /// one snapshot. Returns the number of interactions written.
    @discardableResult
    public func export(format: ExportFormat, profile: String? = nil, to write: (String) throws -> Void) throws -> Int {
        try connection.read("export") {
            let profileID = try profile.map { try requireProfile($0) }
            let statement = try connection.prepare("""
                SELECT i.seq, p.name, it.external_id, k.name, i.value, i.ts
                FROM profiles AS p CROSS JOIN interactions AS i ON i.profile = p.id
                    CROSS JOIN items AS it ON it.id = i.item CROSS JOIN kinds AS k ON k.id = i.kind
                WHERE ?1 = 0 OR p.id = ?1
                ORDER BY p.name, i.ts, i.seq
                """)
            defer { statement.reset() }
            try statement.bind(1, profileID ?? 0)  // profile ids start at 1
            var chunk = format == .csv ? "id,profile,item,kind,value,timestamp\n" : ""
            var rows = 0
            while try statement.step() {
                let value = statement.optionalDouble(4).map(Self.format(value:))
                let (id, name, item, kind, time) = (statement.int64(0), statement.text(1), statement.text(2),
                                                    statement.text(3), statement.int64(5))
                switch format {
                case .csv:
                    chunk += "\(id),\(csvField(name)),\(csvField(item)),\(kind),\(value ?? ""),\(time)\n"
                case .jsonl:
                    chunk += "{\"id\":\(id),\"profile\":\(jsonString(name)),\"item\":\(jsonString(item)),"
                        + "\"kind\":\(jsonString(kind)),\"value\":\(value ?? "null"),\"timestamp\":\(time)}\n"
                }
                rows += 1
                if chunk.utf8.count >= 65536 {
                    try write(chunk)
                    chunk = ""
                }
            }
            if !chunk.isEmpty { try write(chunk) }
            return rows
        }
    }

    /// Writes the export to the file at `path`, atomically: into a temporary
    /// file in the same folder, fsynced, then renamed over `path` (a symlink
    /// is followed and its target replaced). A failure or a kill midway leaves
    /// any previous file as it was; on a failure the temporary file is removed.
    /// Refuses a `path` that is a directory, device, FIFO or socket
    /// (`HistoryError.notARegularFile`) or the database itself. Returns the
    /// number of interactions written.
    @discardableResult
    ///
    /// `temporaryCreated` gets the temporary file's path before anything is written,
    /// so that a command can remove it on SIGINT/SIGTERM (a signal runs no `deinit`).
    public func export(format: ExportFormat, profile: String? = nil, toFile path: String,
                       temporaryCreated: (String) -> Void = { _ in }) throws -> Int {
        let file = try AtomicFile(replacing: path, protecting: [self.path, self.path + "-wal", self.path + "-shm"])
        temporaryCreated(file.temporary)
        let rows = try export(format: format, profile: profile) { try file.write($0) }
        try file.commit()
        return rows
    }

    /// Writes the export to an open file descriptor (standard output: 1),
    /// checking every write; `name` names it in errors
    /// (`HistoryError.cannotWrite`). Returns the number of interactions written.
    @discardableResult
    public func export(format: ExportFormat, profile: String? = nil, toFileDescriptor descriptor: Int32,
                       name: String) throws -> Int {
        try export(format: format, profile: profile) { try writeAll($0, to: descriptor, name: name) }
    }

    /// A value as the shortest text that reads back to the same Double
    /// ("3" rather than "3.0" for whole numbers).
    static func format(value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}

/// A CSV field, quoted when it holds a comma or a quote.
func csvField(_ text: String) -> String {
    guard text.utf8.contains(where: { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\"") }) else { return text }
    return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}

/// A JSON string literal.
func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if scalar.value < 0x20 {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

/// The text of an errno value.
private func systemError(_ code: Int32) -> String { String(cString: strerror(code)) }

/// Writes all of `text` to `descriptor`, retrying short and interrupted writes.
private func writeAll(_ text: String, to descriptor: Int32, name: String) throws(HistoryError) {
    var text = text
    let failure: Int32? = text.withUTF8 { bytes in
        guard let base = bytes.baseAddress else { return nil }  // empty
        var offset = 0
        while offset < bytes.count {
            let written = write(descriptor, base + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return errno
            }
            offset += written
        }
        return nil
    }
    if let failure { throw .cannotWrite(path: name, reason: systemError(failure)) }
}

/// A file replaced atomically: written to `.NAME.tmp-XXXXXXXX` beside it,
/// then fsynced and renamed over it. Removes the temporary file unless committed.
private final class AtomicFile {
    /// The path as given (for messages).
    let path: String
    /// Where the file goes: `path` with a symlink resolved.
    let destination: String
    let temporary: String
    private var descriptor: Int32

    /// Opens a temporary file for replacing `path`; refuses anything but a
    /// regular file or a new name, and any of `protected` (compared by inode).
    init(replacing path: String, protecting protected: [String]) throws(HistoryError) {
        self.path = path
        guard !path.isEmpty else { throw .invalidArgument("the output path is empty") }
        var destination = path
        var info = stat()
        if lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFLNK {
            // A link whose target cannot be found would itself be replaced: refused.
            guard let resolved = realpath(path, nil) else {
                let e = errno
                throw .cannotWrite(path: path, reason: "it is a symbolic link that cannot be followed (\(systemError(e)))")
            }
            destination = String(cString: resolved)
            free(resolved)
        }
        self.destination = destination
        var mode: mode_t?
        if stat(destination, &info) == 0 {
            let kind: String? = switch info.st_mode & S_IFMT {
            case S_IFREG: nil
            case S_IFDIR: "a directory"
            case S_IFCHR: "a character device"
            case S_IFBLK: "a block device"
            case S_IFIFO: "a FIFO"
            case S_IFSOCK: "a socket"
            default: "not a regular file"
            }
            if let kind { throw .notARegularFile(path: path, kind: kind) }
            var other = stat()
            if protected.contains(where: { stat($0, &other) == 0 && other.st_dev == info.st_dev
                                           && other.st_ino == info.st_ino }) {
                throw .invalidArgument("refusing to export onto the history database itself (\(path))")
            }
            mode = info.st_mode & 0o7777
        } else if errno != ENOENT {
            throw .cannotWrite(path: path, reason: systemError(errno))
        }
        let folder = (destination as NSString).deletingLastPathComponent
        let directory = folder.isEmpty ? "." : folder
        if stat(directory, &info) != 0 {
            let e = errno
            throw .cannotWrite(path: path, reason: "folder \(directory): \(systemError(e))")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw .cannotWrite(path: path, reason: "\(directory) is not a folder")
        }
        let name = (destination as NSString).lastPathComponent
        var attempt = 0
        while true {
            let suffix = String(UInt32.random(in: .min ... .max), radix: 16)
            // The name is cut by bytes, so the temporary's stays under NAME_MAX (255 bytes).
            let short = String(decoding: Array(name.utf8.prefix(200)), as: UTF8.self)
            let temporary = directory + "/." + short + ".tmp-" + suffix
            // 0666 less the umask, as for any new file; an existing file's mode is kept below.
            let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o666)
            if fd >= 0 {
                self.temporary = temporary
                descriptor = fd
                break
            }
            let code = errno
            attempt += 1
            if code == EEXIST && attempt < 100 { continue }
            throw .cannotWrite(path: path, reason: "cannot create a file in \(directory): \(systemError(code))")
        }
        if let mode { _ = fchmod(descriptor, mode) }
    }

    deinit { discard() }

    func write(_ text: String) throws(HistoryError) {
        try writeAll(text, to: descriptor, name: path)
    }

    /// fsync, close, rename over the destination, fsync the folder.
    func commit() throws(HistoryError) {
        if fsync(descriptor) != 0 { throw .cannotWrite(path: path, reason: systemError(errno)) }
        let closed = close(descriptor)
        descriptor = -1
        if closed != 0 { throw .cannotWrite(path: path, reason: systemError(errno)) }
        // The destination may have become something else while we wrote (a FIFO, a
        // device): checked again, as closely before the rename as possible.
        var info = stat()
        if lstat(destination, &info) == 0, info.st_mode & S_IFMT != S_IFREG {
            throw .notARegularFile(path: path, kind: "no longer a regular file")
        }
        if rename(temporary, destination) != 0 {
            let e = errno
            throw .cannotWrite(path: path, reason: "cannot rename \(temporary) to it: \(systemError(e))")
        }
        // The rename is durable once the folder is fsynced (best effort: some
        // file systems refuse fsync on a folder).
        let folder = (destination as NSString).deletingLastPathComponent
        let directory = open(folder.isEmpty ? "." : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            _ = fsync(directory)
            _ = close(directory)
        }
        committed = true
    }

    private var committed = false

    /// Closes and removes the temporary file (unless committed).
    private func discard() {
        if descriptor >= 0 { _ = close(descriptor) }
        descriptor = -1
        if !committed { _ = unlink(temporary) }
        committed = true
    }
}
