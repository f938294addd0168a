import ArgumentParser
import Foundation
import GGUF
import Llama

#if canImport(Glibc)
import Glibc
#endif

/// An error the CLI reports as one line, naming the file it concerns.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
    init(path: String, _ error: CustomStringConvertible) { description = "\(path): \(error.description)" }
}

func loadModel(_ path: String) throws -> LlamaModel {
    do {
        return try LlamaModel(path: path)
    } catch {
        throw CLIError(path: path, error)
    }
}

/// Parses "1,2,3" or "1 2 3".
func parseTokenList(_ s: String) throws -> [Int32] {
    let parts = s.split(whereSeparator: { $0 == "," || $0 == " " })
    var out: [Int32] = []
    for p in parts {
        guard let v = Int32(p) else { throw ValidationError("'\(p)' is not a token id") }
        out.append(v)
    }
    guard !out.isEmpty else { throw ValidationError("no token ids given") }
    return out
}

func printErr(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

/// The BLAS line shared by `info` and `bench`.
func blasSummary() -> String {
    var s = "OpenBLAS core \(BLAS.coreName), called single-threaded from palr's own threads"
    if let first = ProcessInfo.processInfo.environment["PALR_BLAS_REEXEC"] {
        s += " (OpenBLAS chose \(first); palr set OPENBLAS_CORETYPE)"
    } else if let wanted = BLAS.recommendedCoreType() {
        s += " (WARNING: generic kernels; set OPENBLAS_CORETYPE=\(wanted) for ~5× faster prompts)"
    }
    return s
}
