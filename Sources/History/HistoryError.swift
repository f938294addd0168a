// The errors the History module throws: small public types whose messages name
// the database file, the profile, or the import file and line.

/// A failure of the history store.
public enum HistoryError: Error, Equatable, CustomStringConvertible {
    /// The database file could not be opened or created.
    case cannotOpen(path: String, reason: String)
    /// The file is not a palr history database (another SQLite file, or not SQLite).
    case notAHistoryDatabase(path: String, reason: String)
    /// The database was written by a newer palr: its schema version is unknown here.
    case newerSchema(path: String, found: Int, supported: Int)
    /// The database cannot be changed (or, in WAL mode, not even read): it was
    /// opened read-only, or the file or its folder is not writable.
    case readOnly(path: String, operation: String, reason: String)
    /// The disk (or the database's page limit) is full; the write was rolled back.
    case diskFull(path: String, operation: String)
    /// Another connection held a lock for longer than the busy timeout.
    case busy(path: String, operation: String, waitedSeconds: Double)
    /// SQLite found the database file damaged.
    case corrupt(path: String, reason: String)
    /// No profile with this name exists.
    case unknownProfile(String)
    /// An argument was rejected before anything was written.
    case invalidArgument(String)
    /// Any other SQLite failure, with its extended result code.
    case sqlite(path: String, operation: String, code: Int32, message: String)
    /// An output file (an export) could not be written; any previous file is unchanged.
    case cannotWrite(path: String, reason: String)
    /// An output path names a directory, a device, a FIFO or a socket, which an
    /// export (written to a temporary file, then renamed) must not replace.
    case notARegularFile(path: String, kind: String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason):
            return "cannot open history database \(path): \(reason)"
        case let .notAHistoryDatabase(path, reason):
            return "\(path) is not a palr history database: \(reason)"
        case let .newerSchema(path, found, supported):
            return "history database \(path) has schema version \(found), but this palr supports at most "
                + "version \(supported): it was written by a newer palr; upgrade palr (the file was not changed)"
        case let .readOnly(path, operation, reason):
            return "\(operation) failed: history database \(path) is read-only: \(reason)"
        case let .diskFull(path, operation):
            return "\(operation) failed: the disk holding \(path) is full (or the database reached its page limit); "
                + "nothing of this \(operation) was written"
        case let .busy(path, operation, waited):
            return "\(operation) failed: history database \(path) stayed locked by another process for "
                + "\(waited) s"
        case let .corrupt(path, reason):
            return "history database \(path) is damaged: \(reason)"
        case let .unknownProfile(name):
            return "unknown profile \(Validation.quoted(name, limit: 80))"
        case let .invalidArgument(reason):
            return reason
        case let .sqlite(path, operation, code, message):
            return "\(operation) failed on history database \(path): \(message) (SQLite code \(code))"
        case let .cannotWrite(path, reason):
            return "cannot write \(path): \(reason)"
        case let .notARegularFile(path, kind):
            return "\(path) is not a regular file (it is \(kind)); nothing was written to it"
        }
    }
}

/// A malformed import file: nothing was imported.
public struct ImportError: Error, Equatable, CustomStringConvertible {
    /// The file as it was named to the import.
    public let file: String
    /// 1-based line number; 0 when the problem is not on a line (unreadable file).
    public let line: Int
    public let reason: String

    public init(file: String, line: Int, reason: String) {
        self.file = file
        self.line = line
        self.reason = reason
    }

    public var description: String {
        (line > 0 ? "\(file):\(line): " : "\(file): ") + "\(reason) (nothing was imported)"
    }
}
