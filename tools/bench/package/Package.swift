// swift-tools-version: 6.1
// palr's package benchmarks (ordo-one/benchmark). A package of its own, so that the root
// package's `swift build`, `swift test` and CI never resolve or build the benchmark
// dependency. Run from this folder: `swift package benchmark` (README.md here).
import PackageDescription

let package = Package(
    name: "palr-benchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        // The root package: its libraries (product PalrLibraries).
        .package(name: "palr", path: "../../.."),
        // Swift 6.3's malloc counting comes from the MallocInterposer trait (no jemalloc needed).
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "PalrBenchmarks",
            dependencies: [
                .product(name: "PalrLibraries", package: "palr"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/PalrBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
