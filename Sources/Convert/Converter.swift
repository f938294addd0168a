// Executing a plan, one tensor at a time:
//
//   read (mmapped safetensors, F32/F16/BF16 → fp32, one row at a time)
//   → merge LoRA (W[i,:] += s·(B[i,:]·A), HF row order, fp32)
//   → check (NaN/Inf, and the range of the output type)
//   → permute (q/k: output row r takes HF row permutedSourceRow(r))
//   → quantize (ggml's reference rounding) into the tensor's output buffer
//   → write (GGUFWriter, which renames a temp file into place at the end)
//
// Rows are split between threads. Memory: one output buffer of the largest
// output tensor, one row of scratch per thread, the current tensor's source pages
// (dropped from the resident set once written), and the adapters' A and B.

import Dispatch
import GGUF

/// Reported after each tensor.
public struct ConvertProgress: Sendable {
    public let index: Int          // 0-based index of the tensor just written
    public let count: Int
    public let job: TensorJob
    public let sourceBytesDone: Int
    public let sourceBytesTotal: Int
}

public enum Converter {
    /// Converts `plan` into a GGUF file at `path`. On any error the destination is
    /// left untouched and the temporary file is removed.
    public static func run(_ plan: ConversionPlan, to path: String,
                           progress: (ConvertProgress) -> Void = { _ in }) throws(ConvertError) {
        let writer: GGUFWriter
        do { writer = try GGUFWriter(path: path, metadata: plan.metadata, tensors: plan.jobs.map(\.plan)) } catch { throw .gguf(error) }
        try run(plan.jobs, writer: writer, threads: plan.options.threads) { i, done in
            progress(ConvertProgress(index: i, count: plan.jobs.count, job: plan.jobs[i],
                                     sourceBytesDone: done, sourceBytesTotal: plan.sourceBytes))
        }
        do { try writer.finish() } catch { throw .gguf(error) }
    }

    static func run(_ jobs: [TensorJob], writer: GGUFWriter, threads: Int,
                    progress: (Int, Int) -> Void) throws(ConvertError) {
        let largest = jobs.map(\.plan.byteCount).max() ?? 0
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: max(largest, 1), alignment: 64)
        defer { out.deallocate() }
        var done = 0
        for (i, job) in jobs.enumerated() {
            let bytes = UnsafeMutableRawBufferPointer(rebasing: out[0..<job.plan.byteCount])
            try convert(job, into: bytes, threads: threads)
            do { try writer.write(tensor: job.plan.name, bytes: UnsafeRawBufferPointer(bytes)) } catch { throw .gguf(error) }
            job.source.releasePages()
            done += job.source.byteCount
            progress(i, done)
        }
    }

    /// The converted bytes of one tensor, in `out` (exactly `job.plan.byteCount` bytes).
    public static func convert(_ job: TensorJob, into out: UnsafeMutableRawBufferPointer, threads: Int) throws(ConvertError) {
        precondition(out.count == job.plan.byteCount)
        let rows = job.rows, cols = job.cols
        let type = job.plan.type
        let rowBytes = type.byteCount(elements: cols) ?? 0
        let patches = job.patches.map(LoadedPatch.init)
        let limit = Self.limit(type)
        let name = "\(job.mapping.hf) (\(job.plan.name))"

        // Rows split into contiguous ranges, one per thread; the first error by row wins.
        let parts = max(1, min(threads, rows))
        let failures = UnsafeMutableBufferPointer<ConvertError?>.allocate(capacity: parts)
        failures.initialize(repeating: nil)
        defer { failures.deinitialize(); failures.deallocate() }
        let base = out.baseAddress!
        parallel(parts) { part in
            let range = (rows * part / parts)..<(rows * (part + 1) / parts)
            let row = UnsafeMutablePointer<Float>.allocate(capacity: cols)
            let delta = UnsafeMutablePointer<Float>.allocate(capacity: patches.isEmpty ? 1 : cols)
            defer { row.deallocate(); delta.deallocate() }
            for r in range {
                let src = job.mapping.permuteHeads.map { LlamaNames.permutedSourceRow(r, rows: rows, heads: $0) } ?? r
                job.source.read(from: src * cols, count: cols, into: row)
                for p in patches { p.add(row: src, into: row, cols: cols, scratch: delta) }
                let amax = Self.maxMagnitude(row, cols)
                if amax.isNaN {
                    let c = (0..<cols).first { !row[$0].isFinite } ?? 0
                    failures[part] = .nonFinite(tensor: name, row: src, column: c, value: row[c],
                                                path: job.source.path, merged: job.patches.map(\.adapter))
                    return
                }
                if amax > limit {
                    failures[part] = .overflow(tensor: name, type: "\(type)", value: amax, chosenBy: job.typeChoice.chosenBy,
                                               remedy: job.typeChoice.remedy)
                    return
                }
                type.quantize(row, into: base + r * rowBytes, count: cols)
            }
        }
        if let e = failures.compactMap({ $0 }).first { throw e }
    }

    /// max |x[i]|, or NaN when any element is NaN or ±Inf. On the bit patterns:
    /// with the sign cleared, unsigned order is magnitude order and NaN/Inf are the
    /// patterns from 0x7F80_0000 up; an integer max reduction vectorizes.
    @inline(__always)
    static func maxMagnitude(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        let m = x.withMemoryRebound(to: UInt32.self, capacity: n) { u in
            var m: UInt32 = 0
            for i in 0..<n { m = max(m, u[i] & 0x7FFF_FFFF) }
            return m
        }
        return m >= 0x7F80_0000 ? .nan : Float(bitPattern: m)
    }

    /// The largest magnitude `type` can store: F16's 65504, BF16's `bf16Limit`, and for
    /// the block types the value whose scale (max/8 for Q4_0, max/127 for Q8_0) is still
    /// a finite fp16.
    static func limit(_ type: GGMLType) -> Float {
        switch type {
        case .f32, .i32: return .greatestFiniteMagnitude
        case .bf16: return bf16Limit
        case .f16: return 65504
        case .q4_0: return 65504 * 8
        case .q8_0: return 65504 * 127
        }
    }

    /// The largest fp32 that BF16 conversion (round to nearest even on the top 16 bits)
    /// keeps finite. BF16's largest finite value is 0x7F7F (fp32 bits 0x7F7F_0000); the
    /// halfway point to Inf (0x7F80_0000) is 0x7F7F_8000, and a tie rounds to the even
    /// pattern, which is 0x7F80 = Inf because 0x7F7F is odd. So everything from
    /// 0x7F7F_8000 up becomes Inf, and 0x7F7F_7FFF (≈ 3.3961514e38) is the last value
    /// that rounds down to a finite BF16. (fp32's own largest value, 0x7F7F_FFFF, would
    /// silently be written as Inf.)
    static let bf16Limit = Float(bitPattern: 0x7F7F_7FFF)
}

/// Runs `body(part)` for every part in 0..<parts, concurrently, and waits for all.
/// The parts must touch disjoint memory; that is the caller's promise, which the
/// unchecked box stands for.
func parallel(_ parts: Int, _ body: (Int) -> Void) {
    withoutActuallyEscaping(body) { body in
        let box = UncheckedBox(body)
        DispatchQueue.concurrentPerform(iterations: parts) { box.value($0) }
    }
}

struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// A LoRA patch with A and B read into fp32 memory.
struct LoadedPatch: @unchecked Sendable {
    let a: [Float]      // [r, in]
    let b: [Float]      // [out, r]
    let rank: Int
    let scale: Float

    init(_ p: LoRAPatch) {
        func load(_ t: SafeTensor) -> [Float] {
            [Float](unsafeUninitializedCapacity: t.elementCount) { buf, n in
                t.read(from: 0, count: t.elementCount, into: buf.baseAddress!)
                n = t.elementCount
            }
        }
        a = load(p.a)
        b = load(p.b)
        rank = p.rank
        scale = p.scale
    }

    /// w[0..<cols] += scale · (B[row, :] · A), computed as PEFT does: the product
    /// first (in fp32), then scaled, then added.
    func add(row: Int, into w: UnsafeMutablePointer<Float>, cols: Int, scratch d: UnsafeMutablePointer<Float>) {
        d.update(repeating: 0, count: cols)
        a.withUnsafeBufferPointer { a in
            for k in 0..<rank {
                let bk = b[row * rank + k]
                let ak = a.baseAddress! + k * cols
                for c in 0..<cols { d[c] += bk * ak[c] }
            }
        }
        for c in 0..<cols { w[c] += d[c] * scale }
    }
}
