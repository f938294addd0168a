// `palr eval` on hostile options, end to end: the exit status and the one line that
// names the option or column (the library side is in CatalogTests/HostileEvalTests).

import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A sanitizer's shadow memory does not fit under `ulimit -v` (as in AddressSpaceLimitTests).
private let underSanitizer = dlsym(nil, "__asan_init") != nil || dlsym(nil, "__tsan_init") != nil

@Suite struct HostileEvalCommandTests {
    static let items = "id,title\nA,Alpha\nB,Beta\nC,Gamma\nD,Delta\n"
    static let ratings = "user,item,time\n1,A,1\n1,B,2\n1,A,3\n2,A,1\n2,B,2\n2,C,3\n3,A,1\n"

    /// `--columns time=user` read every user id as a timestamp and reported metrics;
    /// `user=user,user=item` silently took the last. Both stop with status 1 now.
    @Test func columnMappingsThatAreAmbiguousStopTheRun() throws {
        try withTemporaryDirectory { folder in
            let items = try writeFile(folder, "items.csv", Self.items)
            let ratings = try writeFile(folder, "r.csv", Self.ratings)
            let cases = ["time=user": "column 'user' would be both the user and the time column",
                         "item=user": "column 'user' would be both the user and the item column",
                         "user=user,user=item": "--columns: the user column is given twice",
                         "user=user,,item=item": "--columns: an empty piece"]
            for (mapping, message) in cases {
                let r = try runPalr(["eval", "--items", items, "--interactions", ratings, "--columns", mapping, "--json"])
                #expect(r.status == 1 && r.error.contains(message) && r.output.isEmpty, "\(mapping): \(r)")
            }
        }
    }

    /// Parameters that overflowed the neighbour sums or exhausted memory are usage
    /// errors naming the key, before any file is read.
    @Test func neighbourParametersOutOfRangeAreUsageErrors() throws {
        let cases = [["--params", "window=999999999"]: "--params: window must be in 1...100000, is 999999999",
                     ["--params", "decay=1e5"]: "--params: decay must be in 0...1, is 100000",
                     ["--params", "backward=1e300"]: "--params: backward must be in 0...1000, is 1e+300",
                     ["--grid", "cooc_weight=0.5/1e300"]: "--grid: cooc_weight must be in 0...1000, is 1e+300"]
        for (options, message) in cases {
            let r = try runPalr(["eval", "--items", "/nonexistent/i.csv", "--interactions", "/nonexistent/r.csv"] + options)
            #expect(r.status == 64 && r.error.contains(message), "\(options): \(r)")
        }
    }

    /// A user list with CRLF lines, duplicates and unknown ids evaluates the known users once.
    @Test func aUserListWithCRLFDuplicatesAndUnknownIds() throws {
        try withTemporaryDirectory { folder in
            let items = try writeFile(folder, "items.csv", Self.items)
            let ratings = try writeFile(folder, "r.csv", Self.ratings)
            let list = try writeFile(folder, "users.txt", "1\r\n2\r\n2\r\n 99 \r\n")
            let r = try runPalr(["eval", "--items", items, "--interactions", ratings, "--user-list", list, "--json"])
            #expect(r.status == 0 && r.error.contains("2 of 3 listed users are in the interaction file"), "\(r)")
            let json = try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any]
            #expect(json?["users"] as? Int == 2)
            // User 3 has one interaction: the list, not the data, is named as the reason.
            let three = try writeFile(folder, "three.txt", "3\n")
            let none = try runPalr(["eval", "--items", items, "--interactions", ratings, "--user-list", three])
            #expect(none.status == 1 && none.error.contains("none of the 1 listed users has 3 or more interactions"), "\(none)")
        }
    }

    /// A grid of 2,000 retrieval settings over 20,000 items: every setting had its own
    /// retriever with scratch for every item (520 MB here; 1.8 GB for 20,000 settings on
    /// ML-latest-small), so under `ulimit -v 400000` palr died of SIGABRT. One retriever per
    /// thread now (measured: runs under 150,000 KB).
    @Test(.enabled(if: !underSanitizer, "a sanitizer's shadow memory does not fit under ulimit -v"))
    func aLargeGridDoesNotTakeMemoryPerSetting() throws {
        try withTemporaryDirectory { folder in
            let items = try writeFile(folder, "items.csv", "id,title\n" + (0..<20_000).map { "i\($0),T\($0)\n" }.joined())
            let rows = (0..<3).flatMap { u in (0..<4).map { t in "\(u),i\(u * 4 + t),\(t)\n" } }
            let ratings = try writeFile(folder, "r.csv", "user,item,time\n" + rows.joined())
            let lengths: [String] = (1...20).map { String($0) }
            let decays: [String] = (1...10).map { String(Double($0) / 10) }
            let weights: [String] = (0...9).map { String($0) }
            let grid = "history_length=\(lengths.joined(separator: "/")),recency_decay=\(decays.joined(separator: "/")),"
                + "popularity_weight=\(weights.joined(separator: "/"))"
            let script = "ulimit -v 400000 && exec \"$0\" \"$@\""
            let child = try ChildProcess("/bin/sh", ["-c", script, try palrExecutable(), "eval", "--items", items,
                                                     "--interactions", ratings, "--grid", grid, "--json"])
            child.wait()
            #expect(child.terminationStatus == 0, "\(child.errorOutput)")
            let json = try JSONSerialization.jsonObject(with: Data(child.output.utf8)) as? [String: Any]
            #expect(json?["users"] as? Int == 3)
        }
    }
}
