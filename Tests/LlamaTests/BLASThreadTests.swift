import Testing
@testable import Llama

/// palr's pools call OpenBLAS from several threads at once; OpenBLAS must then run
/// single-threaded, set once before the first pool (its thread count must not change while
/// another thread's call is in flight).
@Suite struct BLASThreadTests {
    @Test func creatingAPoolMakesOpenBLASSingleThreaded() {
        let pool = ThreadPool(threads: 2)
        #expect(pool.count >= 1)
        #expect(BLAS.threadCount == 1, "OpenBLAS runs \(BLAS.threadCount) threads beside palr's pool")
    }
}
