// WrenTokenizer: placeholder until its issue lands; the module exists so the layout in DESIGN.md holds.
public enum WrenTokenizerInfo { public static let module = "WrenTokenizer" }
