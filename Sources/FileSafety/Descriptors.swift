// File descriptors at start-up. With almost none left (`ulimit -n 4`), libdispatch, which
// the argument parser's runtime and the work pools use, traps when it cannot make its event
// descriptor (SIGILL, no message), and a command could die half-way. So an executable first
// raises a low soft limit towards the hard one (as many servers do at start) and, if even
// that leaves fewer than `minimumFree` descriptors, stops with one line before doing
// anything.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public enum Descriptors {
    /// The soft limit palr raises a lower one to (never above the hard limit). Enough for
    /// any command here (a few files, SQLite's three, the pools' event descriptors), low
    /// enough not to change what children inherit for the worse (`select`'s 1,024).
    public static let raisedSoftLimit: rlim_t = 1024

    /// Descriptors palr insists are free after start-up: one command holds at most about
    /// five at once (an input, an output temporary, a store and its two companions) plus
    /// libdispatch's own.
    public static let minimumFree = 16

    /// How many descriptors can still be opened, counting up to `cap`: each probe is a
    /// close-on-exec duplicate of standard input, output or error (the executables make
    /// sure they are open), or with none of them open a /dev/null, closed again before
    /// returning. Only the limit (EMFILE, ENFILE) ends the count early: a probe failing
    /// for another reason (no /dev/null in a chroot) says nothing about descriptors, and
    /// the count is then `cap`.
    public static func countFree(upTo cap: Int) -> Int {
        var opened: [Int32] = []
        opened.reserveCapacity(cap)
        defer { for fd in opened { close(fd) } }
        let source = (Int32(0)...2).first { fcntl($0, F_GETFD) >= 0 }
        while opened.count < cap {
            let fd = source.map { fcntl($0, F_DUPFD_CLOEXEC, 0) } ?? open("/dev/null", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                if errno == EMFILE || errno == ENFILE { break }
                return cap
            }
            opened.append(fd)
        }
        return opened.count
    }

    /// Raises a soft `RLIMIT_NOFILE` below `raisedSoftLimit` to `min(raisedSoftLimit, hard)`,
    /// then, if fewer than `minimumFree` descriptors are free, prints
    /// `Error: only N file descriptors are free (ulimit -n: L); PROGRAM needs at least 16: raise the limit`
    /// to stderr and exits 1.
    public static func ensureEnough(program: String) {
        #if canImport(Glibc)
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
        let resource = RLIMIT_NOFILE
        #endif
        var limit = rlimit()
        if getrlimit(resource, &limit) == 0, limit.rlim_cur < raisedSoftLimit {
            var raised = limit
            raised.rlim_cur = limit.rlim_max == rlim_t.max ? raisedSoftLimit : min(raisedSoftLimit, limit.rlim_max)
            if raised.rlim_cur > limit.rlim_cur, setrlimit(resource, &raised) == 0 { limit = raised }
        }
        let free = countFree(upTo: minimumFree)
        guard free < minimumFree else { return }
        let shown = limit.rlim_cur == rlim_t.max ? "unlimited" : String(limit.rlim_cur)
        let count = free == 1 ? "1 file descriptor is" : "\(free) file descriptors are"
        let line = "Error: only \(count) free (ulimit -n: \(shown)); \(program) needs at least \(minimumFree): raise the limit\n"
        _ = line.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
        exit(1)
    }
}
