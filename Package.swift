// swift-tools-version: 6.1
// palr: an on-device PALR recommender (history store, retrieval, LLM ranking).
// Module map and import rules: README.md ("Layout") and ARCHITECTURE.md.
import PackageDescription

// The C kernels are compiled optimised even in debug builds (the scalar
// references are the test oracles and must not take minutes), and without
// implicit FMA contraction, so the reference quantizers round exactly as ggml's.
let kernelFlags: [CSetting] = [.unsafeFlags(["-O3", "-fno-math-errno", "-ffp-contract=off"])]

// The forward pass and tokenizer are optimised in debug builds too: their element
// loops are test oracles for thousands of rankings and would otherwise take minutes.
let optimised: [SwiftSetting] = [.unsafeFlags(["-O"])]

let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")

let package = Package(
    name: "palr",
    products: [
        .executable(name: "palr", targets: ["palr"]),
        .executable(name: "palr-convert", targets: ["palr-convert"]),
        // The libraries, for the benchmark package in tools/bench/package (a nested
        // package, so that this one never resolves or builds the benchmark dependency).
        .library(name: "PalrLibraries", targets: ["CKernels", "GGUF", "Llama", "Tokenizer", "Catalog", "History", "Ranker", "Convert"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // System libraries (Debian: libopenblas-dev, libsqlite3-dev).
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CSQLite", providers: [.apt(["libsqlite3-dev"])]),

        // Libraries. Arrows point one way; nothing imports Ranker but executables.
        .target(name: "CKernels", cSettings: kernelFlags),
        // Interposes malloc to count allocations; linked only into `palr` and its tests.
        .target(name: "CAllocCounter"),
        .target(name: "CFileSafety"),
        .target(name: "FileSafety", dependencies: ["CFileSafety"]),
        .target(name: "GGUF", dependencies: ["CKernels", "FileSafety"]),
        .target(name: "Llama", dependencies: ["GGUF", "CKernels", "COpenBLAS", "FileSafety"], swiftSettings: optimised),
        .target(name: "Tokenizer", dependencies: ["GGUF", "FileSafety"], swiftSettings: optimised),
        .target(name: "History", dependencies: ["CSQLite", "FileSafety"]),
        .target(name: "Catalog", dependencies: ["GGUF", "FileSafety"]),
        // The converter's logic (palr-convert is its thin executable).
        .target(name: "Convert", dependencies: ["GGUF", "CKernels", "Tokenizer"]),
        .target(name: "Ranker", dependencies: ["Llama", "Tokenizer", "Catalog", "History", "FileSafety"]),

        // Executables: thin (argument parsing, progress, printing).
        .executableTarget(
            name: "palr",
            dependencies: ["GGUF", "Llama", "Tokenizer", "History", "Catalog", "Ranker", "COpenBLAS", "CKernels", "CAllocCounter", "FileSafety", argumentParser]
        ),
        .executableTarget(
            name: "palr-convert",
            dependencies: ["Convert", "GGUF", "Tokenizer", "Catalog", "FileSafety", argumentParser],
            path: "tools/convert"
        ),

        // Tests. Fixtures live in Tests/Fixtures; ../shared is read at run time.
        .testTarget(name: "CKernelsTests", dependencies: ["CKernels", "GGUF"]),
        .testTarget(name: "GGUFTests", dependencies: ["GGUF", "CKernels", "FileSafety"]),
        .testTarget(name: "FileSafetyTests", dependencies: ["FileSafety"]),
        .testTarget(name: "LlamaTests", dependencies: ["Llama", "GGUF", "CKernels", "CAllocCounter"]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "GGUF"]),
        .testTarget(name: "HistoryTests", dependencies: ["History"]),
        .testTarget(name: "CatalogTests", dependencies: ["Catalog", "GGUF"]),
        .testTarget(name: "RankerTests", dependencies: ["Ranker", "Llama", "Tokenizer", "Catalog", "History", "GGUF"]),
        .testTarget(name: "ConvertTests", dependencies: ["Convert", "GGUF", "Llama", "Tokenizer"]),
    ]
)
