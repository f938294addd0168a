#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Picks the next token from a row of logits: greedy at temperature 0, else
/// softmax(logits / temperature) restricted to the top-p nucleus (as llama2.c's
/// `sample`). All buffers are allocated once, in `init`; `sample` allocates nothing.
/// Bad settings and non-finite logits (a broken model) are errors, never traps.
public final class Sampler {
    public let vocabSize: Int
    public let temperature: Float
    public let topP: Float
    private var state: UInt64
    private let probs: UnsafeMutablePointer<Float>     // (vocab)
    private let order: UnsafeMutablePointer<Int32>     // (vocab) candidate ids, sorted by probability

    /// `temperature` ≥ 0 (0 is greedy); `topP` in [0, 1] (0 and 1 disable the nucleus).
    public init(vocabSize: Int, temperature: Float, topP: Float = 0.9, seed: UInt64) throws(LlamaError) {
        guard temperature.isFinite, temperature >= 0 else {
            throw .invalidArgument("temperature must be a finite number ≥ 0 (got \(temperature))")
        }
        guard topP.isFinite, topP >= 0, topP <= 1 else {
            throw .invalidArgument("top-p must be between 0 and 1 (got \(topP))")
        }
        self.vocabSize = max(vocabSize, 1)
        self.temperature = temperature
        self.topP = topP
        state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed
        probs = .allocate(capacity: self.vocabSize)
        order = .allocate(capacity: self.vocabSize)
    }

    deinit {
        probs.deallocate()
        order.deallocate()
    }

    /// The index of the largest logit (the first one on ties).
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        var best = 0
        for i in logits.indices where logits[i] > logits[best] { best = i }
        return Int32(best)
    }

    /// Throws `.nonFiniteLogits` when a logit is NaN or +∞, or all are −∞ (−∞ alone
    /// only rules a token out).
    public func sample(_ logits: UnsafeBufferPointer<Float>) throws(LlamaError) -> Int32 {
        precondition(logits.count == vocabSize, "logits have \(logits.count) entries, the sampler expects \(vocabSize)")
        let n = vocabSize
        var maxLogit = -Float.infinity
        for i in 0..<n {
            let l = logits[i]
            guard !l.isNaN, l != .infinity else { throw .nonFiniteLogits(index: i, value: l) }
            maxLogit = max(maxLogit, l)
        }
        guard maxLogit.isFinite else { throw .nonFiniteLogits(index: 0, value: maxLogit) }
        if temperature <= 0 { return Self.argmax(logits) }

        // softmax(logits / T)
        var sum: Float = 0
        for i in 0..<n {
            let p = ((logits[i] - maxLogit) / temperature).exp
            probs[i] = p
            sum += p
        }
        for i in 0..<n { probs[i] /= sum }
        let coin = Float(nextRandom() >> 40) / 16_777_216.0

        if topP <= 0 || topP >= 1 {
            var cdf: Float = 0
            for i in 0..<n {
                cdf += probs[i]
                if coin < cdf { return Int32(i) }
            }
            return Int32(n - 1)
        }
        // Nucleus: tokens below (1 - p) / (n - 1) cannot be in it, so skip them before sorting.
        let cutoff = (1 - topP) / Float(max(n - 1, 1))
        var m = 0
        for i in 0..<n where probs[i] >= cutoff {
            order[m] = Int32(i)
            m += 1
        }
        // With a nearly flat distribution and a tiny p, even the most likely token can
        // fall under the cutoff: the nucleus is then that token alone.
        if m == 0 { return Self.argmax(logits) }
        var candidates = UnsafeMutableBufferPointer(start: order, count: m)
        candidates.sort { probs[Int($0)] > probs[Int($1)] }
        var cumulative: Float = 0
        var last = m - 1
        for i in 0..<m {
            cumulative += probs[Int(order[i])]
            if cumulative > topP { last = i; break }
        }
        let r = coin * cumulative
        var cdf: Float = 0
        for i in 0...last {
            cdf += probs[Int(order[i])]
            if r < cdf { return order[i] }
        }
        return order[last]
    }

    /// xorshift64* (as llama2.c's random_u32, 64 bits wide).
    private func nextRandom() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
}

private extension Float {
    var exp: Float {
        #if canImport(Glibc)
        return Glibc.expf(self)
        #else
        return Darwin.expf(self)
        #endif
    }
}
