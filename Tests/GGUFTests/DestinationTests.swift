import Foundation
import FileSafety
import Testing
@testable import GGUF

#if canImport(Glibc)
import Glibc
#endif

/// The writer's destination rules: only regular files are replaced (never a device,
/// FIFO or folder, which a rename would turn into a regular file), symbolic links are
/// followed, and temporaries of killed writers are cleaned up. The special files here
/// are made in a temp folder (mkfifo, a folder), never /dev/null or /dev/full.
@Suite struct DestinationTests {
    /// A fresh folder under the system temp dir.
    func tempDir() throws -> String {
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("palr-dest-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return URL(fileURLWithPath: p).resolvingSymlinksInPath().path   // targets come back resolved
    }

    func writeSmall(_ path: String, value: UInt8 = 7) throws -> GGUFWriter {
        let w = try GGUFWriter(path: path, metadata: [("general.architecture", .string("test"))],
                               tensors: [GGUFTensorPlan(name: "x", dims: [4], type: .f32)])
        try w.write(tensor: "x", bytes: [UInt8](repeating: value, count: 16))
        try w.finish()
        return w
    }

    func fileType(_ path: String) -> mode_t? {
        var st = stat()
        return lstat(path, &st) == 0 ? st.st_mode & S_IFMT : nil
    }

    @Test func refusesFIFOAndFolderBeforeAnyWork() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fifo = dir + "/out.gguf"
        #expect(mkfifo(fifo, 0o644) == 0)
        let folder = dir + "/folder.gguf"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)

        for (path, kind) in [(fifo, "a FIFO"), (folder, "a directory")] {
            #expect(throws: GGUFDestinationError.notRegularFile(path: path, kind: kind)) { try GGUFWriter.target(of: path) }
            do {
                _ = try writeSmall(path)
                Issue.record("writing over \(kind) succeeded")
            } catch let error as GGUFError {
                guard case .writeFailed(let p, let reason) = error else { Issue.record("\(error)"); continue }
                #expect(p == path)
                #expect(reason.contains("not a regular file") && reason.contains(kind), "\(reason)")
                print("refused: \(error)")
            }
        }
        // Both are still what they were, and no temporary was created.
        #expect(fileType(fifo) == S_IFIFO)
        #expect(fileType(folder) == S_IFDIR)
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir)) == ["out.gguf", "folder.gguf"])
    }

    @Test func followsSymbolicLinksAndRefusesBadOnes() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A link to a regular file: the target is replaced atomically, the link stays.
        let real = dir + "/real.gguf", link = dir + "/link.gguf"
        #expect(FileManager.default.createFile(atPath: real, contents: Data("old".utf8)))
        #expect(symlink("real.gguf", link) == 0)
        let w = try writeSmall(link)
        #expect(w.target == real)
        #expect(fileType(link) == S_IFLNK)
        #expect(fileType(real) == S_IFREG)
        #expect(try GGUFFile(path: real).tensor(named: "x") != nil)
        #expect(GGUFWriter.temporaryPath(for: link) == real + ".tmp-\(getpid())")
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir)) == ["real.gguf", "link.gguf"])

        // A link to a FIFO is refused; so is a dangling link.
        let fifo = dir + "/fifo", toFifo = dir + "/to-fifo.gguf", dangling = dir + "/dangling.gguf"
        #expect(mkfifo(fifo, 0o644) == 0)
        #expect(symlink("fifo", toFifo) == 0)
        #expect(symlink("nowhere.gguf", dangling) == 0)
        #expect(throws: GGUFDestinationError.notRegularFile(path: toFifo, kind: "a symbolic link to \(fifo), a FIFO")) {
            try GGUFWriter.target(of: toFifo)
        }
        #expect(throws: GGUFError.self) { try writeSmall(toFifo) }
        #expect(throws: GGUFError.self) { try writeSmall(dangling) }
        #expect(fileType(fifo) == S_IFIFO)
        #expect(fileType(toFifo) == S_IFLNK)
        #expect(fileType(dangling) == S_IFLNK)
        #expect(!FileManager.default.fileExists(atPath: dir + "/nowhere.gguf"))
    }

    /// A process id that is certainly not running: above the kernel's pid_max, so no
    /// process can have it (a reaped child's pid could be reused by the processes other
    /// tests start meanwhile). `k` ≥ 1 tells several apart.
    func deadPid(_ k: Int32 = 1) throws -> Int32 {
        let text = try String(contentsOfFile: "/proc/sys/kernel/pid_max", encoding: .utf8)
        let pid = try #require(Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))) + k
        #expect(kill(pid, 0) != 0 && errno == ESRCH)
        return pid
    }

    @Test func removesOnlyStaleTemporariesOfThisDestination() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/out.gguf"
        let dead = try deadPid(1), dead2 = try deadPid(2)
        func make(_ name: String, bytes: Int = 10) {
            #expect(FileManager.default.createFile(atPath: dir + "/" + name, contents: Data(count: bytes)))
        }
        make("out.gguf.tmp-\(dead)", bytes: 1234)           // stale: removed
        make("out.gguf.tmp-\(getpid())")                     // this process: kept
        make("out.gguf.tmp-1")                               // init, running: kept
        make("out.gguf.tmp-\(dead)x")                        // not the pattern: kept
        make("out.gguf.tmp-0\(dead)")                        // not how a pid is written: kept
        make("out.gguf.tmp-")                                // no pid: kept
        make("other.gguf.tmp-\(dead)")                       // another destination: kept
        make("xout.gguf.tmp-\(dead)")                        // another destination: kept
        try FileManager.default.createDirectory(atPath: dir + "/out.gguf.tmp-\(dead2)", withIntermediateDirectories: false)  // not a file: kept
        let before = Set(try FileManager.default.contentsOfDirectory(atPath: dir))

        let removed = GGUFWriter.removeStaleTemporaries(for: out)
        #expect(removed == [GGUFStaleTemporary(path: dir + "/out.gguf.tmp-\(dead)", pid: dead, bytes: 1234)])
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir)) == before.subtracting(["out.gguf.tmp-\(dead)"]))

        // The writer does it too when it starts, and leaves the others.
        make("out.gguf.tmp-\(dead)", bytes: 99)
        let w = try writeSmall(out)
        #expect(w.removedStaleTemporaries == [GGUFStaleTemporary(path: dir + "/out.gguf.tmp-\(dead)", pid: dead, bytes: 99)])
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir))
                == before.subtracting(["out.gguf.tmp-\(dead)", "out.gguf.tmp-\(getpid())"]).union(["out.gguf"]))
    }

    @Test func staleTemporariesOfALinkedDestinationLieBesideItsTarget() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/models", withIntermediateDirectories: false)
        #expect(FileManager.default.createFile(atPath: dir + "/models/real.gguf", contents: Data()))
        #expect(symlink("models/real.gguf", dir + "/link.gguf") == 0)
        let dead = try deadPid()
        #expect(FileManager.default.createFile(atPath: dir + "/models/real.gguf.tmp-\(dead)", contents: Data(count: 5)))
        let removed = GGUFWriter.removeStaleTemporaries(for: dir + "/link.gguf")
        #expect(removed.map(\.path) == [dir + "/models/real.gguf.tmp-\(dead)"])
    }
    // MARK: temporaries are locked, never followed, and the destination is checked again

    /// Creates (or opens) `path` with `contents` and holds an exclusive flock on it, as
    /// another writer does; close the returned descriptor to let go.
    func lockedFile(_ path: String, contents: String) throws -> Int32 {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        try #require(fd >= 0)
        let bytes = Array(contents.utf8)
        #expect(ftruncate(fd, 0) == 0)
        #expect(bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count)
        try #require(flock(fd, LOCK_EX | LOCK_NB) == 0)
        return fd
    }

    func contents(_ path: String) -> String? {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }

    func expectWriteFailed(_ body: () throws -> Void, path: String, reasonContains parts: [String],
                           sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            try body()
            Issue.record("the write succeeded", sourceLocation: sourceLocation)
        } catch let error as GGUFError {
            guard case .writeFailed(let p, let reason) = error else {
                Issue.record("\(error)", sourceLocation: sourceLocation); return
            }
            #expect(p == path, sourceLocation: sourceLocation)
            for part in parts { #expect(reason.contains(part), "\(reason)", sourceLocation: sourceLocation) }
            print("refused: \(error)")
        } catch {
            Issue.record("\(error)", sourceLocation: sourceLocation)
        }
    }

    /// Two writers of OUT whose temporaries have the same name (the same PID: here the
    /// same process; across containers, PID 1 twice): the second is refused and the
    /// first one's file is neither truncated nor overwritten.
    @Test func aSecondWriterOfTheSameTemporaryIsRefusedAndTheFirstIsUntouched() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/out.gguf"
        #expect(FileManager.default.createFile(atPath: out, contents: Data("old".utf8)))
        let temp = GGUFWriter.temporaryPath(for: out)
        #expect(temp == out + ".tmp-\(getpid())")

        // Another writer holds the temporary, half written.
        let other = try lockedFile(temp, contents: "the other writer's data")
        expectWriteFailed({ _ = try writeSmall(out) }, path: out,
                          reasonContains: ["another writer is writing \(out) (\(temp) is locked)"])
        #expect(contents(temp) == "the other writer's data")
        #expect(contents(out) == "old")
        // Not this writer's file, so not registered for removal on a signal either.
        #expect(!SignalCleanup.registered.contains(temp))
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir)) == ["out.gguf", "out.gguf.tmp-\(getpid())"])

        // Once that writer is gone (lock released), a new one takes the name, empties it and succeeds.
        close(other)
        _ = try writeSmall(out)
        #expect(try GGUFFile(path: out).tensor(named: "x") != nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["out.gguf"])

        // Two GGUFWriters at once: the first holds its lock until finish, the second is refused.
        let plan = [GGUFTensorPlan(name: "x", dims: [4], type: .f32)]
        let first = try GGUFWriter(path: out, metadata: [("general.architecture", .string("first"))], tensors: plan)
        #expect(throws: GGUFError.writeFailed(path: out, reason: "another writer is writing \(out) (\(temp) is locked)")) {
            _ = try GGUFWriter(path: out, metadata: [("general.architecture", .string("second"))], tensors: plan)
        }
        #expect(SignalCleanup.registered.filter { $0 == temp }.count == 1)  // the first writer's, once
        let probe = open(temp, O_RDONLY | O_CLOEXEC)
        #expect(probe >= 0)
        #expect(flock(probe, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK)
        close(probe)
        try first.write(tensor: "x", bytes: [UInt8](repeating: 1, count: 16))
        try first.finish()
        #expect(!SignalCleanup.registered.contains(temp))
        #expect(try GGUFFile(path: out)["general.architecture"] == .string("first"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["out.gguf"])
    }

    /// A temporary whose PID is not running here may still be written by a live process
    /// in another PID namespace: it holds the lock, so the file stays.
    @Test func aLockedTemporaryIsNotStaleEvenIfItsPidIsGone() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/out.gguf"
        let dead = try deadPid()
        let temp = dir + "/out.gguf.tmp-\(dead)"
        let fd = try lockedFile(temp, contents: "live")
        #expect(GGUFWriter.removeStaleTemporaries(for: out) == [])
        let w = try writeSmall(out)
        #expect(w.removedStaleTemporaries == [])
        #expect(contents(temp) == "live")

        close(fd)   // its writer is gone: now it is stale
        #expect(GGUFWriter.removeStaleTemporaries(for: out) == [GGUFStaleTemporary(path: temp, pid: dead, bytes: 4)])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["out.gguf"])
    }

    /// A symbolic link, hard link or FIFO planted at the temporary's name is refused:
    /// the file it leads to is not truncated or written, and the open does not block.
    @Test func somethingPlantedAtTheTemporaryNameIsNotFollowed() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/out.gguf", victim = dir + "/victim"
        #expect(FileManager.default.createFile(atPath: victim, contents: Data("precious".utf8)))
        let temp = GGUFWriter.temporaryPath(for: out)

        #expect(symlink(victim, temp) == 0)
        expectWriteFailed({ _ = try writeSmall(out) }, path: temp, reasonContains: ["symbolic link"])
        #expect(fileType(temp) == S_IFLNK)
        #expect(unlink(temp) == 0)

        #expect(link(victim, temp) == 0)
        expectWriteFailed({ _ = try writeSmall(out) }, path: temp, reasonContains: ["2 hard links"])
        #expect(unlink(temp) == 0)

        #expect(mkfifo(temp, 0o644) == 0)
        expectWriteFailed({ _ = try writeSmall(out) }, path: temp, reasonContains: ["a FIFO, not a regular file"])
        #expect(fileType(temp) == S_IFIFO)
        #expect(unlink(temp) == 0)

        // A stale-looking link (dead PID) is not removed through the link either.
        let dead = try deadPid()
        #expect(symlink(victim, dir + "/out.gguf.tmp-\(dead)") == 0)
        #expect(GGUFWriter.removeStaleTemporaries(for: out) == [])
        #expect(fileType(dir + "/out.gguf.tmp-\(dead)") == S_IFLNK)

        #expect(contents(victim) == "precious")
        #expect(fileType(victim) == S_IFREG)
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir)) == ["victim", "out.gguf.tmp-\(dead)"])
    }

    /// A conversion runs for minutes: a destination that stops being a regular file (or
    /// becomes a symbolic link) before `finish()` is not replaced, and the temporary goes.
    @Test func aDestinationChangedBeforeFinishIsRefused() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let plan = [GGUFTensorPlan(name: "x", dims: [4], type: .f32)]
        func started(_ path: String) throws -> GGUFWriter {
            let w = try GGUFWriter(path: path, metadata: [("general.architecture", .string("test"))], tensors: plan)
            try w.write(tensor: "x", bytes: [UInt8](repeating: 3, count: 16))
            return w
        }

        // Absent at the start, a FIFO at the end.
        let out = dir + "/out.gguf"
        let w = try started(out)
        #expect(mkfifo(out, 0o644) == 0)
        expectWriteFailed({ try w.finish() }, path: out, reasonContains: ["it is a FIFO, not a regular file", "changed while"])
        #expect(fileType(out) == S_IFIFO)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["out.gguf"])
        #expect(unlink(out) == 0)

        // A regular file at the start, a symbolic link at the end: the link and its target stay.
        let other = dir + "/other.gguf"
        #expect(FileManager.default.createFile(atPath: out, contents: Data("old".utf8)))
        #expect(FileManager.default.createFile(atPath: other, contents: Data("other".utf8)))
        let w2 = try started(out)
        #expect(unlink(out) == 0 && symlink("other.gguf", out) == 0)
        expectWriteFailed({ try w2.finish() }, path: out, reasonContains: ["became a symbolic link to \(other)"])
        #expect(fileType(out) == S_IFLNK)
        #expect(contents(other) == "other")
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir)) == ["out.gguf", "other.gguf"])
    }

    /// Stale temporaries are found among many entries with long names (names are read in
    /// place from each directory record, whatever its length).
    @Test func staleTemporariesAreFoundAmongManyEntries() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let dead = try deadPid()
        let base = String(repeating: "m", count: 200) + ".gguf"
        for i in 0..<300 {
            let name = i % 3 == 0 ? String(repeating: "z", count: 250) + "\(i)" : "f\(i)"
            #expect(FileManager.default.createFile(atPath: dir + "/" + String(name.prefix(255)), contents: nil))
        }
        let temp = dir + "/" + base + ".tmp-\(dead)"
        #expect(FileManager.default.createFile(atPath: temp, contents: Data(count: 3)))
        #expect(GGUFWriter.removeStaleTemporaries(for: dir + "/" + base) == [GGUFStaleTemporary(path: temp, pid: dead, bytes: 3)])
    }
}
