// swift-tools-version:6.0
// Wren: run and tune LLaMA-family models on a CPU. See docs/architecture.md for the
// architecture; README.md for use. Modules depend downwards only:
// CBLAS/CZstd <- WrenKernels <- WrenFormat <- WrenEngine <- WrenTuning <- WrenEval <- WrenAlign <- WrenCLI;
// WrenServer (on Hummingbird) sits on WrenEngine, beside them.
import PackageDescription

let package = Package(
    name: "Wren",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "wren", targets: ["WrenCLI"]),
        .library(name: "WrenKernels", targets: ["WrenKernels"]),
        .library(name: "WrenFormat", targets: ["WrenFormat"]),
        .library(name: "WrenTokenizer", targets: ["WrenTokenizer"]),
        .library(name: "WrenEngine", targets: ["WrenEngine"]),
        .library(name: "WrenTuning", targets: ["WrenTuning"]),
        .library(name: "WrenEval", targets: ["WrenEval"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The server only (WrenServer): Hummingbird 2 and the packages it is built on.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd",
                       providers: [.apt(["libzstd-dev"])]),
        .target(name: "CWrenKernels"),
        .target(name: "WrenKernels", dependencies: ["CBLAS", "CWrenKernels"]),
        .target(name: "WrenFormat", dependencies: ["WrenKernels", "CZstd"]),
        .target(name: "WrenTokenizer"),
        .target(name: "WrenEngine", dependencies: ["WrenKernels", "WrenFormat", "WrenTokenizer", "CBLAS"]),
        .target(name: "WrenTuning", dependencies: ["WrenEngine", "WrenFormat", "WrenKernels", "WrenTokenizer", "CBLAS", "CWrenKernels"]),
        .target(name: "WrenEval", dependencies: ["WrenEngine", "WrenKernels", "WrenTokenizer", "WrenTuning"]),
        .target(name: "WrenAlign", dependencies: ["WrenEngine", "WrenFormat", "WrenTokenizer", "WrenTuning", "WrenEval"]),
        .target(name: "WrenServer", dependencies: [
            "WrenEngine", "WrenFormat", "WrenTokenizer",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .executableTarget(name: "WrenCLI", dependencies: [
            "WrenFormat", "WrenEngine", "WrenTokenizer", "WrenTuning", "WrenEval", "WrenAlign", "WrenServer",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .target(name: "TestSupport", dependencies: ["WrenKernels", "WrenFormat"], path: "Tests/TestSupport"),
        .testTarget(name: "WrenKernelsTests", dependencies: ["WrenKernels", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "WrenFormatTests", dependencies: ["WrenFormat", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "WrenTokenizerTests", dependencies: ["WrenTokenizer", "WrenEngine", "WrenFormat", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "WrenEngineTests", dependencies: ["WrenEngine", "WrenFormat", "WrenKernels", "CWrenKernels", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "WrenTuningTests", dependencies: ["WrenTuning", "WrenEngine", "WrenFormat", "WrenKernels", "WrenTokenizer", "TestSupport"]),
        .testTarget(name: "WrenEvalTests", dependencies: ["WrenEval", "WrenEngine", "WrenTuning", "WrenTokenizer", "TestSupport"]),
        .testTarget(name: "WrenAlignTests", dependencies: ["WrenAlign", "WrenTuning", "WrenEngine", "WrenFormat", "TestSupport"]),
        .testTarget(name: "WrenCLITests", dependencies: ["WrenCLI", "WrenFormat", "TestSupport"]),
        .testTarget(name: "WrenServerTests", dependencies: ["WrenCLI", "WrenServer", "WrenEngine", "WrenFormat", "TestSupport"]),
        .testTarget(name: "WrenFuzzTests", dependencies: ["WrenTuning", "WrenEngine", "WrenFormat", "WrenKernels", "WrenTokenizer", "WrenServer", "TestSupport"]),
    ]
)
