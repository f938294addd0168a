import Foundation
import Testing

/// A store on a really full file system: a 1 MiB tmpfs mounted in a private mount
/// namespace (`unshare -m`, so the mount vanishes with the script and never shows on the
/// host), filled to the last block. Needs the right to mount (root, or a user namespace);
/// where that is missing the tests are disabled, as they say. `maxPageCount` tests in
/// StoreTests cover SQLITE_FULL from the page limit everywhere.
@Suite(.enabled(if: canMountScratchDisk, "needs `unshare -m` and `mount -t tmpfs` (root or a user namespace)"))
struct FullDiskTests {
    /// Runs `script` with "$1" = palr, "$2" = a tmpfs of `size` mounted in a private
    /// namespace, "$3" = a folder on the normal disk for inputs and outputs.
    private func onFullDisk(size: String = "1m", _ script: String) throws -> (status: Int32, output: String, error: String) {
        try withTemporaryDirectory { folder in
            let mountPoint = folder + "/disk"
            try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: false)
            let child = try ChildProcess("/usr/bin/unshare", ["-m", "/bin/sh", "-c",
                "mount -t tmpfs -o size=\(size) tmpfs \"$2\" || exit 99\n" + script, "sh",
                try palrExecutable(), mountPoint, folder])
            child.wait()
            return (child.terminationStatus, child.output, child.errorOutput)
        }
    }

    /// The import, then a filler file takes every free block.
    private let fillStore = """
        awk 'BEGIN { for (i = 1; i <= 3000; i++) printf "%d\\tm%d\\t4\\t%d\\n", i % 50 + 1, i, 881250000 + i }' > "$3/u.data"
        "$1" history --db "$2/h.sqlite" import --format udata "$3/u.data" >/dev/null || exit 98
        dd if=/dev/zero of="$2/filler" bs=4096 2>/dev/null
        echo "free: $(df -k "$2" | tail -1 | awk '{print $4}') KiB"

        """

    /// With no room even for SQLite's 32 KiB shared-memory file, WAL mode cannot open the
    /// store normally: it opens exclusively (the index in memory), reads work and say so,
    /// a write fails as disk full, and the store is intact when the space comes back.
    @Test func readsWorkWhenTheSharedMemoryFileCannotBeCreated() throws {
        let result = try onFullDisk(fillStore + """
            "$1" history --db "$2/h.sqlite" stats; echo "stats $?"
            "$1" history --db "$2/h.sqlite" list --profile 1 --limit 1; echo "list $?"
            "$1" history --db "$2/h.sqlite" add --profile 1 extra; echo "add $?"
            rm "$2/filler"
            "$1" history --db "$2/h.sqlite" stats; echo "stats after $?"
            """)
        #expect(result.status == 0, "\(result)")
        #expect(result.output.contains("free: 0 KiB"), "the disk was not full: \(result.output)")
        #expect(result.output.contains("stats 0") && result.output.contains("list 0"), "\(result)")
        #expect(result.output.components(separatedBy: "interactions   3000 ").count == 3, "\(result.output)")
        #expect(result.error.contains("opened in exclusive mode"), "\(result.error)")
        #expect(result.output.contains("add 1") && result.error.contains("record failed: the disk holding")
                && result.error.contains("is full"), "\(result.error)")
        #expect(result.output.contains("stats after 0") && !result.error.contains("disk I/O error"), "\(result)")
    }

    /// A forget and a compact on a disk with no free block: the store frees its 1 MiB
    /// reserve (made when the store was created) and runs them; the reserve comes back
    /// once there is room. Without it both failed as disk full.
    @Test func deletionsWorkOnAFullDiskThroughTheReserve() throws {
        let result = try onFullDisk(size: "4m", fillStore + """
            echo "reserve: $(stat -c %s "$2/h.sqlite-reserve")"
            "$1" history --db "$2/h.sqlite" forget --profile 1; echo "forget profile $?"
            "$1" history --db "$2/h.sqlite" forget --item m7 --all-profiles; echo "forget item $?"
            "$1" history --db "$2/h.sqlite" compact --retention-cap 5; echo "compact $?"
            "$1" history --db "$2/h.sqlite" list --profile 1; echo "list 1 $?"
            "$1" history --db "$2/h.sqlite" stats | grep '^interactions'
            rm "$2/filler"
            "$1" history --db "$2/h.sqlite" stats >/dev/null; echo "stats $?"
            echo "reserve again: $(stat -c %s "$2/h.sqlite-reserve")"
            """)
        #expect(result.status == 0, "\(result)")
        #expect(result.output.contains("free: 0 KiB") && result.output.contains("reserve: 1048576"), "\(result.output)")
        // The report counts what the one committed trim did: 2,939 rows left, 49 × 5 kept.
        #expect(result.output.contains("\ntrimmed 2694 interactions,"), "\(result.output)")
        for line in ["forget profile 0", "forget item 0", "compact 0", "list 1 1", "stats 0", "reserve again: 1048576"] {
            #expect(result.output.contains(line + "\n"), "missing '\(line)' in \(result.output) \(result.error)")
        }
        // 49 profiles left, each trimmed to 5 (m7's profile lost one of its 60 first).
        #expect(result.output.contains("interactions   245 "), "\(result.output)")
        #expect(result.error.contains("unknown profile '1'") && !result.error.contains("is full"), "\(result.error)")
    }

    /// The reserve grows with the store: an import of 40,000 interactions (a 2.2 MB store)
    /// leaves a 3 MiB reserve, and a compact that trims half of every profile (changing
    /// nearly every page) runs on a disk with no free block. With the fixed 1 MiB reserve
    /// of before, that compact failed as disk full. After the compact the reserve shrinks
    /// with the store.
    @Test func theReserveGrowsWithTheStore() throws {
        let result = try onFullDisk(size: "12m", """
            awk 'BEGIN { for (i = 1; i <= 40000; i++) printf "%d\\tm%d\\t4\\t%d\\n", i % 20 + 1, i, 881250000 + i }' > "$3/u.data"
            "$1" history --db "$2/h.sqlite" import --format udata "$3/u.data" >/dev/null 2>&1 || exit 98
            echo "store: $(stat -c %s "$2/h.sqlite") reserve: $(stat -c %s "$2/h.sqlite-reserve")"
            dd if=/dev/zero of="$2/filler" bs=4096 2>/dev/null
            echo "free: $(df -k "$2" | tail -1 | awk '{print $4}') KiB"
            "$1" history --db "$2/h.sqlite" compact; echo "compact $?"
            "$1" history --db "$2/h.sqlite" stats | grep '^interactions'
            rm "$2/filler"
            "$1" history --db "$2/h.sqlite" compact >/dev/null; echo "compact again $?"
            echo "store: $(stat -c %s "$2/h.sqlite") reserve: $(stat -c %s "$2/h.sqlite-reserve")"
            """)
        #expect(result.status == 0, "\(result)")
        #expect(result.output.contains("free: 0 KiB"), "the disk was not full: \(result.output)")
        #expect(result.output.contains("reserve: 3145728\n"), "\(result.output)")
        #expect(result.output.contains("compact 0\n") && !result.error.contains("is full"), "\(result)")
        #expect(result.output.contains("interactions   20000 "), "\(result.output)")
        #expect(result.output.contains("compact again 0\n") && result.output.hasSuffix("reserve: 2097152\n"), "\(result.output)")
    }

    /// The reserve never grows into the room the store's own writes need: on a 7 MiB disk
    /// a 2.2 MB store would want a 3 MiB reserve, which would leave less free than the
    /// reserve holds (about 4 MB are free), so it stays at 1 MiB and recording still works.
    @Test func theReserveDoesNotTakeTheLastFreeSpace() throws {
        let result = try onFullDisk(size: "7m", """
            awk 'BEGIN { for (i = 1; i <= 40000; i++) printf "%d\\tm%d\\t4\\t%d\\n", i % 20 + 1, i, 881250000 + i }' > "$3/u.data"
            "$1" history --db "$2/h.sqlite" import --format udata "$3/u.data" >/dev/null 2>&1 || exit 98
            echo "free: $(df -k "$2" | tail -1 | awk '{print $4}') KiB"
            "$1" history --db "$2/h.sqlite" add --profile 1 extra; echo "add $?"
            echo "reserve: $(stat -c %s "$2/h.sqlite-reserve")"
            """)
        #expect(result.status == 0, "\(result)")
        #expect(result.output.contains("add 0\n") && result.output.hasSuffix("reserve: 1048576\n"), "\(result)")
        // Room for the 2 MiB growth, but not for it and as much again.
        let free = result.output.split(separator: "\n").first { $0.hasPrefix("free: ") }
            .flatMap { Int($0.dropFirst(6).prefix { $0.isNumber }) } ?? 0
        #expect(free > 2048 && free < 2048 + 3072, "free: \(free) KiB")
    }

    /// A reserve made anew (after a forget on a full disk freed it, or when it is missing)
    /// keeps the same rule as one that grows: on the 7 MiB disk the 2.2 MB store's 3 MiB
    /// would leave less free than it holds, so it is made at 1 MiB (it was made at 3 MiB,
    /// taking the space the rule above keeps for the store's writes).
    @Test func aReserveMadeAnewDoesNotTakeTheLastFreeSpace() throws {
        let result = try onFullDisk(size: "7m", """
            awk 'BEGIN { for (i = 1; i <= 40000; i++) printf "%d\\tm%d\\t4\\t%d\\n", i % 20 + 1, i, 881250000 + i }' > "$3/u.data"
            "$1" history --db "$2/h.sqlite" import --format udata "$3/u.data" >/dev/null 2>&1 || exit 98
            rm "$2/h.sqlite-reserve"
            "$1" history --db "$2/h.sqlite" add --profile 1 extra; echo "add $?"
            echo "reserve: $(stat -c %s "$2/h.sqlite-reserve")"
            """)
        #expect(result.status == 0, "\(result)")
        #expect(result.output.contains("add 0\n") && result.output.hasSuffix("reserve: 1048576\n"), "\(result)")
    }

    /// A file at the reserve's name that the store did not make (another store named
    /// `h.sqlite-reserve`, say) is never deleted to make room: the forget fails instead.
    @Test func aFileThatIsNotTheReserveIsNeverDeleted() throws {
        let result = try onFullDisk(size: "4m", """
            printf 'someone else\\n' > "$2/h.sqlite-reserve"

            """ + fillStore + """
            "$1" history --db "$2/h.sqlite" forget --profile 1; echo "forget $?"
            echo "kept: $(cat "$2/h.sqlite-reserve")"
            """)
        #expect(result.status == 0, "\(result)")
        #expect(result.output.contains("free: 0 KiB") && result.output.contains("forget 1\n")
                && result.output.contains("kept: someone else"), "\(result)")
        #expect(result.error.contains("forget profile failed: the disk holding"), "\(result.error)")
    }

    /// `recommend` still ranks on a full disk (the store opens exclusively) and says the
    /// ranking was not cached; `refresh`, whose job is the cache, fails (status 1) naming
    /// why, instead of reporting success with nothing stored.
    @Test func recommendRanksAndRefreshFailsWhenNothingCanBeCached() throws {
        let models = repositoryRoot.appendingPathComponent("models").path
        let result = try onFullDisk(size: "4m", """
            M="\(models)"
            "$1" history --db "$2/h.sqlite" import --format movielens-csv "$M/demo-history.csv" >/dev/null || exit 98
            dd if=/dev/zero of="$2/filler" bs=4096 2>/dev/null; dd if=/dev/zero of="$2/filler2" bs=512 2>/dev/null
            P="--model $M/palr-ml-small-q4_0.gguf --catalog $M/ml-small-catalog.gguf --db $2/h.sqlite"
            "$1" recommend $P --profile 129 --k 3; echo "recommend $?"
            "$1" refresh $P --all-stale; echo "refresh $?"
            """)
        #expect(result.status == 0, "\(result)")
        #expect(result.output.contains("recommend 0") && result.output.contains("  1. "), "\(result)")
        #expect(result.output.contains("refresh 1"), "\(result)")
        #expect(result.error.contains("129: ranked but not cached: cache recommendations failed: the disk holding"),
                "\(result.error)")
        #expect(result.error.contains("4 of 4 profile(s) failed to refresh"), "\(result.error)")
    }

    /// Creating a store on a full disk fails as disk full and leaves nothing: before, SQLite
    /// made the file first, and an empty file stayed under the store's name (reads then
    /// said "the file is empty"). Now the store is built under a temporary name and linked
    /// into place only when whole. With room again, the same command creates it.
    @Test func aStoreCreatedOnAFullDiskLeavesNothing() throws {
        let result = try onFullDisk(size: "4m", """
            dd if=/dev/zero of="$2/filler" bs=4096 2>/dev/null
            echo "free: $(df -k "$2" | tail -1 | awk '{print $4}') KiB"
            "$1" history --db "$2/new.sqlite" add --create-profile --profile p x; echo "add $?"
            "$1" history --db "$2/new.sqlite" import --format udata /dev/null; echo "import $?"
            echo "left: $(ls -A "$2" | tr '\n' ' ')"
            rm "$2/filler"
            "$1" history --db "$2/new.sqlite" add --create-profile --profile p x >/dev/null; echo "add again $?"
            "$1" history --db "$2/new.sqlite" stats | grep '^interactions'
            echo "now: $(ls -A "$2" | tr '\n' ' ')"
            """)
        #expect(result.status == 0, "\(result)")
        #expect(result.output.contains("free: 0 KiB"), "the disk was not full: \(result.output)")
        #expect(result.output.contains("add 1\n") && result.output.contains("import 1\n"), "\(result)")
        #expect(result.error.components(separatedBy: "create failed: the disk holding ").count == 3
                && result.error.contains("/disk/new.sqlite is full"), "\(result.error)")
        #expect(result.output.contains("left: filler \n"), "\(result.output)")
        #expect(result.output.contains("add again 0") && result.output.contains("interactions   1 "), "\(result)")
        #expect(result.output.contains("now: new.sqlite new.sqlite-reserve \n"), "\(result.output)")
    }

    /// A store on a read-only file system (closed cleanly, so no -wal or -shm exists and
    /// none can be created) is read as immutable: `list`, `stats` and `export` work; a
    /// write is refused as read-only. (Before, every read failed: "unable to open
    /// database file (No such file or directory)".)
    @Test func aStoreOnAReadOnlyFileSystemIsRead() throws {
        let result = try onFullDisk(size: "4m", """
            "$1" history --db "$2/a b%.sqlite" add --create-profile --profile p x y >/dev/null || exit 98
            mount -o remount,ro "$2" || exit 97
            "$1" history --db "$2/a b%.sqlite" stats | grep '^interactions'; echo "stats $?"
            "$1" history --db "$2/a b%.sqlite" export | wc -l; echo "export $?"
            "$1" history --db "$2/a b%.sqlite" add --profile p z; echo "add $?"
            """)
        #expect(result.status == 0, "\(result)")
        #expect(result.output.contains("interactions   2 ") && result.output.contains("stats 0")
                && result.output.contains("3\nexport 0"), "\(result)")
        #expect(result.output.contains("add 1") && result.error.contains("read-only"), "\(result)")
    }
}

/// Whether this process may mount a tmpfs in a private mount namespace.
let canMountScratchDisk: Bool = {
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare") else { return false }
    let probe = Process()
    probe.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("palr-mount-probe-\(getpid())").path
    try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    probe.arguments = ["-m", "/bin/sh", "-c", "mount -t tmpfs -o size=64k tmpfs \"$0\"", folder]
    probe.standardOutput = FileHandle.nullDevice
    probe.standardError = FileHandle.nullDevice
    do { try probe.run() } catch { return false }
    probe.waitUntilExit()
    return probe.terminationStatus == 0
}()
