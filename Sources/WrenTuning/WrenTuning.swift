// WrenTuning: placeholder until its issue lands; the module exists so the layout in DESIGN.md holds.
public enum WrenTuningInfo { public static let module = "WrenTuning" }
