// What the machine offers the kernels: the kernel set in use and the number of
// physical cores, which is the default thread count (a second hardware thread
// of a core shares its vector units, so it adds contention, not throughput, to
// these compute-bound loops).

import CWrenKernels
import Foundation

public enum Machine {
    /// The kernel set in use: "avx2" or "scalar" (`WREN_KERNELS` chooses; see CWrenKernels).
    public static var kernels: String { String(cString: wren_kernels_name()) }

    /// Physical cores this process may run on: distinct (package, core) pairs among
    /// the CPUs of its affinity list (/proc/self/status), from Linux's sysfs topology;
    /// the logical processor count where either cannot be read.
    public static let physicalCores: Int = {
        let logical = ProcessInfo.processInfo.activeProcessorCount
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else { return logical }
        var cpus: [Int] = []
        for part in line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces).split(separator: ",") {
            let ends = part.split(separator: "-").compactMap { Int($0) }
            if ends.count == 1 { cpus.append(ends[0]) } else if ends.count == 2, ends[0] <= ends[1], ends[1] - ends[0] < 65536 { cpus += Array(ends[0]...ends[1]) }
        }
        var cores = Set<String>()
        for cpu in cpus {
            let dir = "/sys/devices/system/cpu/cpu\(cpu)/topology/"
            guard let core = try? String(contentsOfFile: dir + "core_id", encoding: .utf8),
                  let pkg = try? String(contentsOfFile: dir + "physical_package_id", encoding: .utf8) else { return logical }
            cores.insert(pkg.trimmingCharacters(in: .whitespacesAndNewlines) + ":" + core.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return cores.isEmpty ? logical : max(1, min(logical, cores.count))
    }()
}
