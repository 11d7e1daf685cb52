import XCTest
final class ServerTests: XCTestCase {}
