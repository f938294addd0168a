import Foundation
import GGUF
import Llama
import Testing

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
}
