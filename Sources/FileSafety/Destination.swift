// The destination rules every palr writer follows. Files are written atomically:
// into a temporary file beside the destination, fsynced, then renamed over it. A
// rename replaces whatever directory entry is there, so the destination must be a
// regular file or absent: a device, FIFO, socket or folder (as root, even /dev/null)
// is refused. A symbolic link is followed and its target replaced (the link stays a
// link); a dangling link is refused.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a destination cannot be written atomically.
public enum DestinationError: Error, Equatable, CustomStringConvertible {
    /// `path` (or the file its symbolic link points to) exists and is not a regular
    /// file; `kind` says what it is ("a character device", "a symbolic link to
    /// /dev/null, a character device").
    case notRegularFile(path: String, kind: String)
    /// `path` is a symbolic link whose target does not exist (or cannot be resolved);
    /// `reason` says why ("it points to x.gguf, which does not exist").
    case unresolvableLink(path: String, reason: String)

    public var path: String {
        switch self {
        case .notRegularFile(let p, _), .unresolvableLink(let p, _): return p
        }
    }

    /// What is wrong, as a clause after the path ("cannot write PATH: REASON").
    public var reason: String {
        switch self {
        case .notRegularFile(_, let k):
            return "it is \(k), not a regular file; files are written atomically, by renaming a temporary file over the destination, which would replace it"
        case .unresolvableLink(_, let r):
            return "it is a symbolic link that cannot be followed (\(r)); give the file's own path"
        }
    }

    public var description: String { "\(path): \(reason)" }
}

public enum Destination {
    /// The file a write to `path` replaces: `path` itself when it is a regular file or
    /// does not exist; the fully resolved target when `path` is a symbolic link (so the
    /// link stays a link and its target is replaced atomically). Throws when that file
    /// exists and is not a regular file, or when a link cannot be resolved.
    public static func target(of path: String) throws(DestinationError) -> String {
        var st = stat()
        guard lstat(path, &st) == 0 else { return path }   // absent (or unreadable: open reports it)
        let mode = st.st_mode & S_IFMT
        if mode == S_IFREG { return path }
        guard mode == S_IFLNK else { throw .notRegularFile(path: path, kind: kindName(mode)) }
        guard let resolved = realpath(path, nil) else {
            let e = errno
            let reason = e == ENOENT ? "it points to \(linkText(path) ?? "?"), which does not exist" : describe(e)
            throw .unresolvableLink(path: path, reason: reason)
        }
        // A path that is not UTF-8 would come back with U+FFFD in it: another path.
        let decoded = String(validatingCString: resolved)
        free(resolved)
        guard let real = decoded else {
            throw .unresolvableLink(path: path, reason: "it leads to a path that is not valid UTF-8")
        }
        guard stat(real, &st) == 0 else { return real }
        let targetMode = st.st_mode & S_IFMT
        guard targetMode == S_IFREG else {
            throw .notRegularFile(path: path, kind: "a symbolic link to \(real), \(kindName(targetMode))")
        }
        return real
    }

    /// `path` with its folder resolved to an absolute path without links, the last
    /// component kept as it is: two names of one directory entry compare equal, whether
    /// or not the file exists. nil when the folder cannot be resolved.
    public static func canonical(_ path: String) -> String? {
        let (folder, name) = splitPath(path)
        guard let resolved = realpath(folder, nil) else { return nil }
        defer { free(resolved) }
        guard let real = String(validatingCString: resolved) else { return nil }
        return joinPath(real, name)
    }

    /// The first of `inputs` that writing `target` (a file `target(of:)` returned)
    /// would replace: the same directory entry by name, or the same file (device and
    /// inode, which catches hard links). Commands check their inputs with it, so that
    /// `-o` can never overwrite what the command reads.
    public static func overwrittenInput(target: String, inputs: [String]) -> String? {
        let name = canonical(target)
        var info = stat()
        let exists = stat(target, &info) == 0
        for input in inputs {
            if let name, let other = canonical(input), other == name { return input }
            if let real = try? Destination.target(of: input), real != input, let other = canonical(real), other == name {
                return input
            }
            var other = stat()
            if exists && stat(input, &other) == 0 && other.st_dev == info.st_dev && other.st_ino == info.st_ino {
                return input
            }
        }
        return nil
    }

    /// "a directory", "a FIFO", … for the file type bits of a mode.
    public static func kindName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: return "a regular file"
        case S_IFDIR: return "a directory"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        case S_IFLNK: return "a symbolic link"
        default: return "not a regular file"
        }
    }

    /// What the symbolic link `path` holds, unresolved.
    public static func linkText(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buf, buf.count - 1)
        guard n >= 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// (folder, last component) of a path; "." for a bare name.
    public static func splitPath(_ path: String) -> (folder: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let dir = slash == path.startIndex ? "/" : String(path[..<slash])
        return (dir, String(path[path.index(after: slash)...]))
    }

    public static func joinPath(_ dir: String, _ name: String) -> String {
        dir.hasSuffix("/") ? dir + name : dir + "/" + name
    }

    /// fsyncs the folder holding `path`, so that a rename in it survives power loss
    /// (best effort: some file systems refuse fsync on a folder).
    public static func syncFolder(of path: String) {
        let dfd = open(splitPath(path).folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }

    public static func describe(_ e: Int32) -> String { String(cString: strerror(e)) }
}
