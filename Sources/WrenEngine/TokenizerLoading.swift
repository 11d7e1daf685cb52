// Building a Tokenizer from a model file's tokenizer metadata.

import WrenFormat
import WrenTokenizer

extension TokenizerSpec {
    /// The tokenizer described by Wren/GGUF tokenizer metadata.
    public init(_ m: TokenizerMetadata) {
        self.init(model: m.model, pre: m.pre, tokens: m.tokens.strings, scores: m.scores?.floats,
                  tokenTypes: m.tokenTypes?.int32s, merges: m.merges?.strings,
                  bosID: m.bosID, eosID: m.eosID, unkID: m.unkID,
                  addBOS: m.addBOS, addEOS: m.addEOS, addSpacePrefix: m.addSpacePrefix)
    }
}

extension Tokenizer {
    /// Loads the tokenizer stored in a .wren file, a GGUF file, or a Hugging Face directory.
    public static func load(model path: String) throws -> Tokenizer {
        let source = try ModelSource.open(path)
        return try Tokenizer(TokenizerSpec(TokenizerMetadata(metadata: source.metadata, path: path)))
    }

    /// Loads the tokenizer of an open .wren file.
    public convenience init(file: WrenFile) throws {
        try self.init(TokenizerSpec(TokenizerMetadata(metadata: file.metadata, path: file.path)))
    }
}
