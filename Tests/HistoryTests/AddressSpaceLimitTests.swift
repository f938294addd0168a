// `palr` under an address-space limit (`ulimit -v`): OpenBLAS maps a 128 MiB buffer per
// sgemm call in flight (and one per thread of its own, started as it loads) and retries a
// failed mapping forever, so these commands used to spin until killed. Now the room is
// checked when a session is created (one error line, exit 1) and OpenBLAS starts no
// threads of its own under a limit. The limits come from measurements of the debug build
// (README, "Limits"): `demo -t 2` is refused from 160,000 to 440,000 KB and runs from
// 460,000 KB; `demo -t 1` is refused from 140,000 to 300,000 KB and runs from 320,000 KB.
// Each test runs the bundled demo (well under a second) in a child, killed if it hangs.
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A sanitizer's runtime reserves terabytes of shadow address space: its palr cannot start
/// under any `ulimit -v`, so these tests are off under a sanitizer (AllocationTests do
/// the same).
private let underSanitizer = dlsym(nil, "__asan_init") != nil || dlsym(nil, "__tsan_init") != nil

@Suite(.enabled(if: !underSanitizer, "a sanitizer's shadow memory does not fit under ulimit -v"))
struct AddressSpaceLimitTests {
    /// Runs `palr ARGS` under `ulimit -v kilobytes` (OPENBLAS_NUM_THREADS unset, as a user's
    /// shell would have it); nil when it is still running after `seconds` (then killed).
    private func palrUnderLimit(_ kilobytes: Int, _ arguments: [String], seconds: Double = 120)
        throws -> (status: Int32, output: String, error: String)? {
        let script = "unset OPENBLAS_NUM_THREADS; ulimit -v \(kilobytes) && exec \"$0\" \"$@\""
        let child = try ChildProcess("/bin/sh", ["-c", script, try palrExecutable()] + arguments)
        let deadline = Date().addingTimeInterval(seconds)
        while child.isRunning, Date() < deadline { usleep(50_000) }
        if child.isRunning {
            child.kill()
            child.wait()
            return nil
        }
        child.wait()
        return (child.terminationStatus, child.output, child.errorOutput)
    }

    /// Room for the process but not for two threads' OpenBLAS buffers: one line, exit 1.
    @Test func tooTightALimitIsOneErrorLineNotAHang() throws {
        let r = try #require(try palrUnderLimit(300_000, ["demo", "-t", "2"]), "palr demo hung under ulimit -v 300000")
        #expect(r.status == 1)
        #expect(r.output.isEmpty)
        let lines = r.error.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(r.error)")
        #expect(r.error.contains("the address-space limit (ulimit -v: 292 MiB) leaves "))
        #expect(r.error.contains("OpenBLAS needs about 288 MiB of buffers for 2 threads: raise the limit or use fewer threads (-t)"))
    }

    /// Below the room OpenBLAS's own threads took as it loaded (before they were turned
    /// off under a limit, every command hung at exit there, `--help` included).
    @Test func aLimitBelowOpenBLASsOwnThreadsStillEndsEveryCommand() throws {
        let help = try #require(try palrUnderLimit(250_000, ["demo", "--help"]), "palr demo --help hung under ulimit -v 250000")
        #expect(help.status == 0)
        #expect(help.output.contains("USAGE: palr demo"))
        let demo = try #require(try palrUnderLimit(250_000, ["demo", "-t", "1"]), "palr demo -t 1 hung under ulimit -v 250000")
        #expect(demo.status == 1)
        #expect(demo.error.contains("OpenBLAS needs about 160 MiB of buffers for 1 thread: raise the limit"))
    }

    /// `bench` under a limit too small for its 512 MiB bandwidth buffer measures with a
    /// smaller one and says so (it aborted in Swift's allocator, "failed to allocate").
    @Test func benchFitsItsBandwidthBufferUnderALimit() throws {
        let model = repositoryRoot.appendingPathComponent("models/palr-ml-small-q4_0.gguf").path
        let r = try #require(try palrUnderLimit(500_000, ["bench", "--model", model, "-p", "8", "-n", "4", "--repeat", "1", "-t", "1"]),
                             "palr bench hung under ulimit -v 500000")
        #expect(r.status == 0, "stderr: \(r.error)")
        #expect(!r.error.contains("failed to allocate"), "\(r.error)")
        #expect(r.output.contains("of measured read bandwidth") && r.output.contains(" MiB buffer: ulimit -v)"), "\(r.output)")
        #expect(r.output.contains("fp32 GEMM bound at batch 8"), "\(r.output)")
    }

    /// A limit with room to spare changes nothing.
    @Test func aSufficientLimitRunsTheDemo() throws {
        let r = try #require(try palrUnderLimit(2_000_000, ["demo", "-t", "2"]), "palr demo hung under ulimit -v 2000000")
        #expect(r.status == 0, "stderr: \(r.error)")
        #expect(r.output.contains("palr demo: model palr-ml-small-q4_0.gguf"))
        #expect(r.output.components(separatedBy: "\n  1. ").count == 5, "four profiles ranked:\n\(r.output)")
        #expect(r.error.isEmpty)
    }
}
