import Foundation
import Testing

/// A C compiler on PATH (the Swift toolchain brings clang), for the link-refusing shim.
let cCompiler: String? = {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for name in ["cc", "clang", "gcc"] {
        for folder in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(folder)/\(name)") {
            return "\(folder)/\(name)"
        }
    }
    return nil
}()

/// A file system without hard links (exFAT, vfat, some FUSE mounts), simulated: palr runs
/// with a preloaded shim whose link() and linkat() fail with EPERM, as such a file system
/// answers. A new store and its reserve are then made in place (the fallbacks of the
/// atomic creation), work, and leave no temporaries; without the fallbacks the first
/// command failed ("cannot link …").
@Suite(.enabled(if: cCompiler != nil, "needs a C compiler (cc, clang or gcc) to build the link-refusing shim"))
struct NoHardLinkTests {
    @Test func storesAndReservesAreMadeInPlaceWithoutHardLinks() throws {
        try withTemporaryDirectory { folder in
            let source = folder + "/nolink.c", shim = folder + "/nolink.so"
            try """
                #define _GNU_SOURCE
                #include <dlfcn.h>
                #include <errno.h>
                #include <stdio.h>
                #include <stdlib.h>
                #include <string.h>
                int link(const char *from, const char *to) { (void)from; (void)to; errno = EPERM; return -1; }
                /* Counts the preparations of the interaction insert (one per connection that records). */
                typedef int (*prepare_fn)(void *, const char *, int, unsigned int, void **, const char **);
                int sqlite3_prepare_v3(void *db, const char *sql, int n, unsigned int flags, void **stmt, const char **tail) {
                    const char *count = getenv("PALR_TEST_COUNT_FILE");
                    if (count && sql && strstr(sql, "INSERT INTO interactions")) {
                        FILE *f = fopen(count, "a");
                        if (f) { fputs("insert\\n", f); fclose(f); }
                    }
                    prepare_fn real = (prepare_fn)dlsym(RTLD_NEXT, "sqlite3_prepare_v3");
                    return real(db, sql, n, flags, stmt, tail);
                }
                int linkat(int a, const char *from, int b, const char *to, int flags) {
                    (void)a; (void)from; (void)b; (void)to; (void)flags; errno = EPERM; return -1;
                }
                """.write(toFile: source, atomically: false, encoding: .utf8)
            let compile = try ChildProcess(try #require(cCompiler), ["-shared", "-fPIC", "-o", shim, source, "-ldl"])
            compile.wait()
            try #require(compile.terminationStatus == 0, "\(compile.errorOutput)")

            let disk = folder + "/disk"
            try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: false)
            let db = disk + "/h.sqlite"
            func palr(_ arguments: [String]) throws -> ChildProcess {
                let child = try ChildProcess(try palrExecutable(), ["history", "--db", db] + arguments,
                                             environment: ["LD_PRELOAD": shim, "PALR_TEST_COUNT_FILE": folder + "/count"])
                child.wait()
                return child
            }
            let add = try palr(["add", "--create-profile", "--profile", "1", "m1", "m2"])
            #expect(add.terminationStatus == 0, "\(add.errorOutput)")
            // The write ran once: the missing link support was found before it, not after
            // it had run into a temporary that could never take the store's name.
            let inserts = try String(contentsOfFile: folder + "/count", encoding: .utf8)
            #expect(inserts == "insert\n", "the first write ran \(inserts.split(separator: "\n").count) times")
            // The shim was in force: a link in the same environment fails.
            let ln = try ChildProcess("/bin/ln", [db, disk + "/second"], environment: ["LD_PRELOAD": shim])
            ln.wait()
            #expect(ln.terminationStatus != 0, "the shim did not refuse ln")

            let names = try FileManager.default.contentsOfDirectory(atPath: disk).sorted()
            #expect(names == ["h.sqlite", "h.sqlite-reserve"], "\(names)")
            let reserve = try Data(contentsOf: URL(fileURLWithPath: db + "-reserve"))
            #expect(reserve.count == 1 << 20 && reserve.starts(with: Data("palr history reserve 1\n".utf8)))

            let list = try palr(["list", "--profile", "1"])
            #expect(list.terminationStatus == 0 && list.output.contains("m1") && list.output.contains("m2"),
                    "\(list.output) \(list.errorOutput)")
            // A reserve removed (as a full disk's deletion does) is made again in place.
            try FileManager.default.removeItem(atPath: db + "-reserve")
            let forget = try palr(["forget", "--profile", "1"])
            #expect(forget.terminationStatus == 0, "\(forget.errorOutput)")
            #expect(FileManager.default.fileExists(atPath: db + "-reserve"))
            let left = try FileManager.default.contentsOfDirectory(atPath: disk).sorted()
            #expect(left == ["h.sqlite", "h.sqlite-reserve"], "\(left)")
        }
    }
}
