import Foundation
import Testing
@testable import GGUF

#if canImport(Glibc)
import Glibc
#endif

/// MappedFile refuses anything but a regular file, by name, without blocking: a plain
/// open of a FIFO for reading would wait for a writer forever.
@Suite struct MappedFileTests {
    @Test func aFIFOOrFolderIsRefusedAtOnceAndNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("palr-map-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fifo = dir + "/model.gguf", folder = dir + "/folder"
        #expect(mkfifo(fifo, 0o644) == 0)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)

        // Should the open block after all, this opens the writing end after a while, so
        // the reader sees end-of-file and the test fails on its time instead of hanging.
        let watchdog = Thread {
            usleep(5_000_000)
            let fd = open(fifo, O_WRONLY | O_NONBLOCK)
            if fd >= 0 { close(fd) }
        }
        watchdog.start()

        let start = Date()
        for (path, kind) in [(fifo, "a FIFO"), (folder, "a directory")] {
            #expect(throws: GGUFError.cannotOpen(path: path, reason: "not a regular file (\(kind))")) { try MappedFile(path: path) }
        }
        #expect(Date().timeIntervalSince(start) < 2, "opening the FIFO blocked")
        // The readers' errors name the path and the kind too.
        #expect(throws: GGUFError.cannotOpen(path: fifo, reason: "not a regular file (a FIFO)")) { try GGUFFile(path: fifo) }
    }
}
