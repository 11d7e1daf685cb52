// WrenEngine: placeholder until its issue lands; the module exists so the layout in DESIGN.md holds.
public enum WrenEngineInfo { public static let module = "WrenEngine" }
