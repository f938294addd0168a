// The destination rules every palr writer follows. Files are written atomically:
// into a temporary file beside the destination, fsynced, then renamed over it. A
// rename replaces whatever directory entry is there, so the destination must be a
// regular file or absent: a device, FIFO, socket or folder (as root, even /dev/null)
// is refused. A symbolic link is followed and its target replaced (the link stays a
// link); a dangling link is refused.

import CFileSafety

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
            // By name (the file need not exist yet) ...
            if let name, let other = canonical(input), other == name { return input }
            // ... or as the same file: hard links, and links to it (stat follows them).
            var other = stat()
            if exists && stat(input, &other) == 0 && other.st_dev == info.st_dev && other.st_ino == info.st_ino {
                return input
            }
        }
        return nil
    }

    /// Whether a flock held on a file at `path` might conflict with the POSIX byte-range
    /// locks SQLite takes on it: false only on local file systems known to keep the two
    /// apart (ext2/3/4, XFS, Btrfs, tmpfs, ramfs, overlayfs, ZFS, F2FS, JFS, ReiserFS);
    /// true elsewhere (NFS and SMB clients emulate flock with POSIX locks, so do 9p and
    /// some FUSE file systems) and when the type cannot be read.
    public static func flockMayConflictWithSQLite(_ path: String) -> Bool {
        var type: UInt = 0
        guard palr_file_system_type(path, &type) == 0 else { return true }   // unknown: the careful answer
        // statfs f_type magic numbers (linux/magic.h, and ZFS's).
        let keepsThemApart: Set<UInt> = [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994, 0x8584_58F6,
                                         0x794C_7630, 0x2FC1_2FC1, 0xF2F5_2010, 0x3153_464A, 0x5265_4973]
        return !keepsThemApart.contains(type)
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

    /// Unlinks `path` if it is a regular file (not followed through a link) whose lock
    /// (flock) nobody holds and the name still refers to the file locked; returns its
    /// size. Writers hold their temporary's lock until they rename or remove it, so a
    /// temporary nobody locks was left by a killed writer. The files `path + suffix` for
    /// each of `companions` go first, while the lock is held: a kill between leaves
    /// `path`, which the next cleaner removes with them (removed after it, they were left
    /// without the name any cleaner looks for).
    public static func removeIfUnlocked(_ path: String, companions: [String] = []) -> Int? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }   // after the unlink: the lock is held until the name is gone
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, flock(fd, LOCK_EX | LOCK_NB) == 0 else { return nil }
        // Another cleaner may have removed it and a new writer created and locked a new
        // file at the name between this open and this lock: then the name is not this file.
        var now = stat()
        guard fstat(fd, &st) == 0, st.st_nlink > 0, lstat(path, &now) == 0,
              now.st_dev == st.st_dev, now.st_ino == st.st_ino else { return nil }
        for suffix in companions { _ = unlink(path + suffix) }
        return unlink(path) == 0 ? Int(st.st_size) : nil
    }

    /// The entries of `folder` whose names start with `prefix` (read in place: a dirent
    /// record is only d_reclen bytes long, shorter than its declared d_name array).
    public static func names(in folder: String, withPrefix prefix: String) -> [String] {
        guard let d = opendir(folder) else { return [] }
        defer { closedir(d) }
        guard let nameOffset = MemoryLayout<dirent>.offset(of: \.d_name) else { return [] }
        var found: [String] = []
        while let entry = readdir(d) {
            let cName = (UnsafeRawPointer(entry) + nameOffset).assumingMemoryBound(to: CChar.self)
            if let name = String(validatingCString: cName), name.hasPrefix(prefix) { found.append(name) }
        }
        return found
    }

    /// Whether no process with this id runs here (kill(pid, 0) fails with ESRCH).
    public static func isGone(_ pid: Int32) -> Bool {
        kill(pid, 0) != 0 && errno == ESRCH
    }
}
