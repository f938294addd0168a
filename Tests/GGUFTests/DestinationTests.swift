import Foundation
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

    /// A process id that is certainly not running: a child that has exited and been reaped.
    func deadPid() throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        let pid = p.processIdentifier
        #expect(kill(pid, 0) != 0 && errno == ESRCH)
        return pid
    }

    @Test func removesOnlyStaleTemporariesOfThisDestination() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/out.gguf"
        let dead = try deadPid(), dead2 = try deadPid()
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
}
