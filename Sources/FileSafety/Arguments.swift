// Command-line arguments that are not UTF-8. Swift decodes them with U+FFFD in place of
// invalid bytes, so `$'\xff.gguf'` would silently become another path (and two different
// byte strings the same profile or item id). The executables refuse such an argument
// before parsing anything.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum Arguments {
    /// The first argument after the program name that is not valid UTF-8: its position
    /// (1-based, as `$1`) and up to its first 24 bytes in hex, or nil when all are valid.
    public static func firstInvalidUTF8() -> (index: Int, bytes: String)? {
        for i in 1..<Int(CommandLine.argc) {
            guard let raw = CommandLine.unsafeArgv[i], String(validatingCString: raw) == nil else { continue }
            let hex = UnsafeBufferPointer(start: raw, count: strlen(raw)).prefix(24)
                .map { String(UInt8(bitPattern: $0), radix: 16) }.joined(separator: " ")
            return (i, hex)
        }
        return nil
    }

    /// Prints `Error: argument N is not valid UTF-8 (bytes …); PROGRAM takes … as UTF-8`
    /// to stderr and exits 64 (a usage error) if an argument is not UTF-8.
    public static func refuseInvalidUTF8(program: String, takes what: String) {
        guard let bad = firstInvalidUTF8() else { return }
        usageError("argument \(bad.index) is not valid UTF-8 (bytes \(bad.bytes)); \(program) takes \(what) as UTF-8")
    }

    /// The first `--name=` with nothing after the `=` before a `--` that ends the options.
    /// The argument parser would take the *next* argument as its value (`--kind= m1 m2`
    /// recorded m2 with kind m1), so such an option is refused instead.
    public static func firstEmptyInlineValue(_ arguments: [String] = Array(CommandLine.arguments.dropFirst())) -> String? {
        for argument in arguments {
            if argument == "--" { return nil }
            if argument.hasPrefix("--"), argument.count > 3, argument.hasSuffix("="),
               argument.firstIndex(of: "=") == argument.index(before: argument.endIndex) {
                return argument
            }
        }
        return nil
    }

    /// Exits 64 with a one-line error if an option is written `--name=` with no value.
    public static func refuseEmptyInlineValues() {
        guard let option = firstEmptyInlineValue() else { return }
        let name = String(option.dropLast())
        usageError("\(option) has an empty value: write \(name)=VALUE or \(name) VALUE")
    }

    private static func usageError(_ message: String) -> Never {
        let line = "Error: \(message)\n"
        _ = line.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
        exit(64)
    }
}
