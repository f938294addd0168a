// AtomicFile: the destination is replaced whole or not at all, its mode is kept, links
// are followed, special files are refused, and the temporary is registered for
// removal on a signal exactly while it exists.
import FileSafety
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct AtomicFileTests {
    func folder() throws -> String {
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("palr-atomic-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return URL(fileURLWithPath: p).resolvingSymlinksInPath().path
    }

    func text(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }
    func names(_ dir: String) -> Set<String> { Set((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []) }

    @Test func commitReplacesTheFileKeepingItsMode() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/out.txt"
        #expect(FileManager.default.createFile(atPath: out, contents: Data("old".utf8),
                                               attributes: [.posixPermissions: 0o640]))
        let file = try AtomicFile(replacing: out)
        #expect(file.temporary.hasPrefix(dir + "/.out.txt.tmp-\(getpid())-"))
        #expect(SignalCleanup.registered.contains(file.temporary))
        try file.write("new ")
        try file.write("text")
        #expect(text(out) == "old")  // untouched until the commit
        try file.commit()
        #expect(text(out) == "new text")
        var info = stat()
        #expect(stat(out, &info) == 0 && info.st_mode & 0o777 == 0o640)
        #expect(!SignalCleanup.registered.contains(file.temporary))
        #expect(names(dir) == ["out.txt"])
        #expect(throws: AtomicFileError.self) { try file.write("late") }
    }

    @Test func aDroppedOrFailedWriterLeavesTheDestination() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/out.txt"
        #expect(FileManager.default.createFile(atPath: out, contents: Data("old".utf8)))
        var temporary = ""
        do {
            let file = try AtomicFile(replacing: out)
            temporary = file.temporary
            try file.write("partial")
        }  // dropped without commit
        #expect(text(out) == "old" && names(dir) == ["out.txt"])
        #expect(!SignalCleanup.registered.contains(temporary))

        // The destination turns into a folder while the file is written: not replaced.
        let file = try AtomicFile(replacing: out)
        try file.write("new")
        try FileManager.default.removeItem(atPath: out)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        #expect(throws: AtomicFileError.destination(.notRegularFile(path: out, kind: "a directory"))) { try file.commit() }
        #expect(names(dir) == ["out.txt"] && !SignalCleanup.registered.contains(file.temporary))
    }

    @Test func linksAreFollowedAndSpecialFilesRefused() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(FileManager.default.createFile(atPath: dir + "/real.txt", contents: Data("old".utf8)))
        #expect(symlink("real.txt", dir + "/link.txt") == 0)
        let file = try AtomicFile(replacing: dir + "/link.txt")
        #expect(file.target == dir + "/real.txt")
        try file.write("via link")
        try file.commit()
        #expect(text(dir + "/real.txt") == "via link")
        var info = stat()
        #expect(lstat(dir + "/link.txt", &info) == 0 && info.st_mode & S_IFMT == S_IFLNK)

        #expect(mkfifo(dir + "/fifo", 0o600) == 0)
        #expect(symlink("missing.txt", dir + "/dangling") == 0)
        let refused: [(String, AtomicFileError)] = [
            (dir + "/fifo", .destination(.notRegularFile(path: dir + "/fifo", kind: "a FIFO"))),
            (dir, .destination(.notRegularFile(path: dir, kind: "a directory"))),
            (dir + "/dangling", .destination(.unresolvableLink(path: dir + "/dangling",
                                                               reason: "it points to missing.txt, which does not exist"))),
            (dir + "/no/such/folder.txt", .cannotWrite(path: dir + "/no/such/folder.txt",
                                                       reason: "folder \(dir)/no/such: No such file or directory")),
        ]
        for (path, expected) in refused {
            #expect(throws: expected, "\(path)") { _ = try AtomicFile(replacing: path) }
        }
        #expect(names(dir) == ["real.txt", "link.txt", "fifo", "dangling"])
    }

    /// A link re-pointed while the file is written: neither the old target nor the new
    /// one is replaced.
    @Test func aLinkRepointedDuringTheWriteIsRefused() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["a.txt", "b.txt"] {
            #expect(FileManager.default.createFile(atPath: dir + "/" + name, contents: Data(name.utf8)))
        }
        #expect(symlink("a.txt", dir + "/link.txt") == 0)
        let file = try AtomicFile(replacing: dir + "/link.txt")
        try file.write("new")
        #expect(unlink(dir + "/link.txt") == 0 && symlink("b.txt", dir + "/link.txt") == 0)
        #expect(throws: AtomicFileError.cannotWrite(path: dir + "/link.txt",
                                                   reason: "it now leads to \(dir)/b.txt, not \(dir)/a.txt as when the write started; it was not replaced")) {
            try file.commit()
        }
        #expect(text(dir + "/a.txt") == "a.txt" && text(dir + "/b.txt") == "b.txt")
        #expect(names(dir) == ["a.txt", "b.txt", "link.txt"])
    }

    /// A link into a folder whose name is not UTF-8 cannot be followed faithfully as a
    /// Swift String (the bytes would become U+FFFD, another path): refused.
    @Test func aLinkToANonUTF8PathIsRefused() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var raw = Array((dir + "/bad-").utf8CString.dropLast()) + [CChar(bitPattern: 0xff), 0]
        #expect(mkdir(&raw, 0o755) == 0)
        var target = Array(raw.dropLast()) + Array("/out.txt".utf8CString)
        #expect(creat(&target, 0o644) >= 0)
        let link = dir + "/link.txt"
        #expect(symlink(&target, link) == 0)
        #expect(throws: AtomicFileError.destination(.unresolvableLink(path: link, reason: "it leads to a path that is not valid UTF-8"))) {
            _ = try AtomicFile(replacing: link)
        }
    }

    /// Temporaries a killed writer of the same name left (pid gone, lock free) are
    /// removed when the next writer starts; a locked one, this process's, another
    /// name's and names off the pattern stay.
    @Test func staleTemporariesOfKilledWritersAreRemoved() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pidMax = try #require(Int32(try String(contentsOfFile: "/proc/sys/kernel/pid_max", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        let stale = ".out.txt.tmp-\(pidMax + 1)-ab12", locked = ".out.txt.tmp-\(pidMax + 2)-cd34"
        let kept = [locked, ".out.txt.tmp-\(getpid())-ef56", ".out.txt.tmp-\(pidMax + 3)-xyz", ".other.txt.tmp-\(pidMax + 1)-ab12",
                    ".out.txt.tmp-\(pidMax + 4)"]
        // SQLite's files beside a stale temporary (a store built under that name) go with it;
        // those beside a live one stay.
        let staleCompanions = [stale + "-wal", stale + "-shm", stale + "-journal"]
        for name in [stale] + staleCompanions + kept + [locked + "-wal"] {
            #expect(FileManager.default.createFile(atPath: dir + "/" + name, contents: Data("left".utf8)))
        }
        let holder = open(dir + "/" + locked, O_RDONLY)
        #expect(holder >= 0 && flock(holder, LOCK_EX | LOCK_NB) == 0)
        defer { close(holder) }
        let file = try AtomicFile(replacing: dir + "/out.txt")
        #expect(file.removedStaleTemporaries == [dir + "/" + stale])
        // The new temporary is locked while it exists.
        let probe = open(file.temporary, O_RDONLY)
        #expect(probe >= 0 && flock(probe, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK)
        close(probe)
        try file.commit()
        #expect(names(dir) == Set(kept + [locked + "-wal", "out.txt"]))
    }

    /// `commitIfAbsent` gives the temporary the name only when nothing has it, never
    /// replacing: a file made meanwhile wins and the temporary is gone either way.
    @Test func commitIfAbsentNeverReplaces() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/new.db"
        let first = try AtomicFile(replacing: out, newFileMode: 0o600)
        try first.write("first")
        let second = try AtomicFile(replacing: out)
        try second.write("second")
        #expect(try first.commitIfAbsent() == (linked: true, unsupported: false))
        #expect(try second.commitIfAbsent() == (linked: false, unsupported: false))
        #expect(text(out) == "first")
        var info = stat()
        #expect(stat(out, &info) == 0 && info.st_mode & 0o777 == 0o600 && info.st_nlink == 1)
        #expect(names(dir) == ["new.db"])
        #expect(!SignalCleanup.registered.contains(first.temporary) && !SignalCleanup.registered.contains(second.temporary))
        #expect(throws: AtomicFileError.self) { try first.commitIfAbsent() }
    }

    @Test func theRegistryHoldsWhatIsRegistered() throws {
        // A few slots only: AtomicFile tests running alongside need slots too.
        let mine = (0..<3).map { "/nonexistent/palr-registry-\(UUID().uuidString)-\($0)" }
        let tokens = mine.compactMap { SignalCleanup.register($0) }
        #expect(tokens.count == mine.count && Set(tokens).count == mine.count)
        #expect(Set(SignalCleanup.registered).isSuperset(of: mine))
        for token in tokens { SignalCleanup.unregister(token) }
        #expect(Set(SignalCleanup.registered).isDisjoint(with: mine))
        SignalCleanup.unregister(nil)
        SignalCleanup.unregister(SignalCleanup.capacity + 3)  // ignored
    }
}
