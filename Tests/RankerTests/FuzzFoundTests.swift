import Catalog
import Foundation
import GGUF
import History
import Llama
import Testing
import Tokenizer
import Ranker

/// Models the command-level fuzzer (`tools/fuzz`) found crashing or wrongly accepted:
/// structurally valid GGUF with one hostile value, each reduced to a test.
@Suite struct FuzzFoundTests {
    /// llama.attention.key_length = 2^62 (even and positive, so it passed validation):
    /// head_count × key_length overflowed while binding attn_q, a trap (SIGILL) in every
    /// command that loads the model, `palr info` included.
    @Test(arguments: [UInt64(1) << 62, 1 << 61, 1 << 40])
    func aHugeKeyLengthIsRefused(keyLength: UInt64) throws {
        var m = try HostileModel()
        m.extraMetadata = [("llama.attention.key_length", .uint64(keyLength))]
        let error = #expect(throws: LlamaError.self) { _ = try m.ranker() }
        #expect(error?.description.contains("attention.key_length") == true, "\(String(describing: error))")
    }

    /// String values from the file went into error messages raw: general.architecture
    /// "\u{1}\u{1B}[31m" printed a terminal escape, a tokenizer.ggml.model holding a newline
    /// split the error over two lines. They are escaped now, so the error stays one line.
    @Test(arguments: ["general.architecture", "tokenizer.ggml.model", "llama.rope.scaling.type", "palr.scoring_mode"])
    func aStringValueWithControlCharactersStaysOnOneLine(key: String) throws {
        var m = try HostileModel()
        m.extraMetadata = [(key, .string("x\n\u{1B}[2J\u{9B}1m\u{202E}y"))]
        var message = ""
        do { _ = try m.ranker() } catch { message = "\(error)" }
        #expect(message.contains("x\\u{A}\\u{1B}[2J\\u{9B}1m\\u{202E}y"), "\(message)")
        #expect(!message.unicodeScalars.contains { $0.properties.generalCategory == .control
                                                     || $0.properties.generalCategory == .format }, "\(message)")
    }

    /// A pack whose palr.catalog.id is 1 MiB long: `recommend` never finished (the id was
    /// cut to the store's limit one character at a time, counting its bytes again each time:
    /// 83 s for 64 KiB). It is cut in one pass now, on a character boundary, as before.
    @Test func aLongCatalogIdIsCutAtOnce() throws {
        let long = String(repeating: "é", count: 10_000) + "x"
        let info = CatalogInfo(id: long, name: "long id", method: "seq")
        let table = NeighbourTable(itemCount: 2, k: 1)
        table.setRow(0, [(1, 0.5)])
        let catalog = try ItemCatalog(info: info, items: ItemList(ids: ["a", "b"], titles: ["Alpha", "Beta"]),
                                      popularity: [1, 2], neighbours: table)
        let path = temporaryStorePath("palr-long-catalog-id")
        defer { removeStore(path) }
        // Only the Recommender is timed: the model load and the store's creation are not its work.
        let ranker = try makeRanker(), store = try HistoryStore(path: path)
        let start = Date()
        let rec = try Recommender(ranker: ranker, catalog: catalog, store: store, modelID: "m#0")
        #expect(Date().timeIntervalSince(start) < 2, "\(Date().timeIntervalSince(start)) s")
        #expect(rec.catalogID == String(repeating: "é", count: 100) + "#" + catalog.contentDigest)
    }
}
