#include "hvcore/cpuid.h"

#include <algorithm>
#include <cstring>
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace hvcore {
namespace {

void ClearBits(uint32_t& reg, std::initializer_list<int> bits) {
  for (int b : bits) reg &= ~(1u << b);
}

void SetBit(uint32_t& reg, int bit, bool on) {
  if (on) {
    reg |= 1u << bit;
  } else {
    reg &= ~(1u << bit);
  }
}

kvm_cpuid_entry2* Find(std::vector<kvm_cpuid_entry2>& cpuid, uint32_t function,
                       uint32_t index = 0) {
  for (kvm_cpuid_entry2& e : cpuid) {
    if (e.function == function && e.index == index) return &e;
  }
  return nullptr;
}

bool Has(const std::vector<kvm_cpuid_entry2>& cpuid, uint32_t function) {
  return std::any_of(
      cpuid.begin(), cpuid.end(),
      [&](const kvm_cpuid_entry2& e) { return e.function == function; });
}

kvm_cpuid_entry2 Entry(uint32_t function, uint32_t index, uint32_t flags,
                       uint32_t eax, uint32_t ebx, uint32_t ecx, uint32_t edx) {
  kvm_cpuid_entry2 e{};
  e.function = function;
  e.index = index;
  e.flags = flags;
  e.eax = eax;
  e.ebx = ebx;
  e.ecx = ecx;
  e.edx = edx;
  return e;
}

// Replaces all subleaves of extended-topology leaf `function` (0xB or 0x1F):
// SMT level (1 thread per core, shift 0), core level (n cores, shift = bits),
// then the terminating invalid level. EDX (x2APIC id) is per VP.
void SetExtendedTopology(std::vector<kvm_cpuid_entry2>& cpuid,
                         uint32_t function, uint32_t n) {
  if (!Has(cpuid, function)) return;
  cpuid.erase(std::remove_if(cpuid.begin(), cpuid.end(),
                             [&](const kvm_cpuid_entry2& e) {
                               return e.function == function;
                             }),
              cpuid.end());
  constexpr uint32_t kIndexed = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  constexpr uint32_t kLevelSmt = 1, kLevelCore = 2;
  cpuid.push_back(Entry(function, 0, kIndexed, 0, 1, 0 | (kLevelSmt << 8), 0));
  cpuid.push_back(
      Entry(function, 1, kIndexed, ApicIdBits(n), n, 1 | (kLevelCore << 8), 0));
  cpuid.push_back(Entry(function, 2, kIndexed, 0, 0, 2, 0));
}

}  // namespace

std::vector<std::string> HiddenFeaturesTheHostKept(
    std::span<const kvm_cpuid_entry2> effective) {
  struct Bit {
    uint32_t function, index;
    int reg;  // 0 eax, 1 ebx, 2 ecx, 3 edx
    int bit;
    const char* name;
  };
  static constexpr Bit kBits[] = {
      {1, 0, 2, 13, "CX16"},    {1, 0, 2, 26, "XSAVE"}, {1, 0, 2, 28, "AVX"},
      {1, 0, 2, 12, "FMA"},     {1, 0, 2, 29, "F16C"},  {7, 0, 1, 5, "AVX2"},
      {7, 0, 1, 16, "AVX512F"},
  };
  std::vector<std::string> out;
  for (const Bit& b : kBits) {
    for (const kvm_cpuid_entry2& e : effective) {
      if (e.function != b.function || e.index != b.index) continue;
      const uint32_t regs[4] = {e.eax, e.ebx, e.ecx, e.edx};
      if ((regs[b.reg] >> b.bit) & 1) out.push_back(b.name);
    }
  }
  for (const kvm_cpuid_entry2& e : effective) {
    if (e.function == 0xD && e.index == 0 && e.eax != 0) {
      out.push_back("leaf 0xD (XSAVE state components)");
      break;
    }
  }
  return out;
}

uint32_t ApicIdBits(uint32_t n) {
  uint32_t bits = 0;
  while (n > 1 && (1u << bits) < n) ++bits;
  return bits;
}

CpuVendor GuestCpuVendor(std::span<const kvm_cpuid_entry2> cpuid) {
  for (const kvm_cpuid_entry2& e : cpuid) {
    if (e.function != 0) continue;
    char vendor[13] = {};
    std::memcpy(vendor + 0, &e.ebx, 4);
    std::memcpy(vendor + 4, &e.edx, 4);
    std::memcpy(vendor + 8, &e.ecx, 4);
    if (std::strcmp(vendor, "GenuineIntel") == 0) return CpuVendor::kIntel;
    if (std::strcmp(vendor, "AuthenticAMD") == 0 ||
        std::strcmp(vendor, "HygonGenuine") == 0) {
      return CpuVendor::kAmd;
    }
    return CpuVendor::kOther;
  }
  return CpuVendor::kOther;
}

std::vector<kvm_cpuid_entry2> FilterGuestCpuid(
    std::vector<kvm_cpuid_entry2> supported) {
  std::vector<kvm_cpuid_entry2> out;
  out.reserve(supported.size());
  for (kvm_cpuid_entry2 e : supported) {
    switch (e.function) {
      case 0x1:
        // kvm_pvm's emulator rejects lock cmpxchg16b and xsave/xrstor
        // (host-facts.md), so CX16 and XSAVE go; OSXSAVE follows XSAVE, and the
        // AVX family needs XSAVE-managed state. Bits: FMA 12, CX16 13, XSAVE
        // 26, OSXSAVE 27, AVX 28, F16C 29. Bit 31: hypervisor.
        ClearBits(e.ecx, {12, 13, 26, 27, 28, 29});
        e.ecx |= 1u << 31;
        break;
      case 0x7:
        if (e.index == 0) {
          // EBX: AVX2 5, MPX 14, AVX512F 16, DQ 17, IFMA 21, PF 26, ER 27, CD
          // 28, BW 30, VL 31.
          ClearBits(e.ebx, {5, 14, 16, 17, 21, 26, 27, 28, 30, 31});
          // ECX: AVX512_VBMI 1, PKU 3, OSPKE 4, CET_SS 7, VBMI2 6, VAES 9,
          // VPCLMULQDQ 10, VNNI 11, BITALG 12, VPOPCNTDQ 14.
          ClearBits(e.ecx, {1, 3, 4, 6, 7, 9, 10, 11, 12, 14});
          // EDX: 4VNNIW 2, 4FMAPS 3, VP2INTERSECT 8, CET_IBT 20, AMX-BF16 22,
          // AVX512_FP16 23, AMX-TILE 24, AMX-INT8 25.
          ClearBits(e.edx, {2, 3, 8, 20, 22, 23, 24, 25});
        } else if (e.index == 1) {
          // EAX: AVX_VNNI 4, AVX512_BF16 5, AMX-FP16 21, AVX-IFMA 23.
          ClearBits(e.eax, {4, 5, 21, 23});
          // EDX: AVX-VNNI-INT8 4, AVX-NE-CONVERT 5, AMX-COMPLEX 8,
          // AVX-VNNI-INT16 10, AVX10 19.
          ClearBits(e.edx, {4, 5, 8, 10, 19});
        }
        break;
      case 0xD:   // XSAVE state enumeration: meaningless without XSAVE.
      case 0x24:  // AVX10 enumeration.
        continue;
      case 0x80000001:
        // AMD VEX/XOP encodings: XOP 11, FMA4 16.
        ClearBits(e.ecx, {11, 16});
        break;
      default:
        break;
    }
    out.push_back(e);
  }
  return out;
}

std::vector<kvm_cpuid_entry2> BuildGuestCpuid(
    std::span<const kvm_cpuid_entry2> supported, const CpuidConfig& config) {
  const uint32_t n = std::max<uint32_t>(config.vcpu_count, 1);
  const uint32_t bits = ApicIdBits(n);
  const CpuVendor vendor = GuestCpuVendor(supported);

  // KVM's paravirtual leaves move from 0x40000000 to the configured base.
  // Every other hypervisor-range leaf KVM lists is dropped.
  std::vector<kvm_cpuid_entry2> cpuid;
  for (kvm_cpuid_entry2 e :
       FilterGuestCpuid({supported.begin(), supported.end()})) {
    if (e.function >= 0x40000000 && e.function <= 0x4FFFFFFF) {
      if (!config.kvm_leaves || e.function > 0x40000001) continue;
      e.function = config.kvm_leaf_base + (e.function - 0x40000000);
    }
    cpuid.push_back(e);
  }

  if (kvm_cpuid_entry2* e = Find(cpuid, 0x1)) {
    // EBX[23:16]: logical processors per package; EDX[28] HTT says it is
    // valid.
    e->ebx = (e->ebx & 0xFF00FFFF) | (std::min<uint32_t>(n, 255) << 16);
    SetBit(e->edx, 28, n > 1);
  }

  if (vendor == CpuVendor::kIntel) {
    // Deterministic cache parameters: L1/L2 per core, L3 per package.
    for (kvm_cpuid_entry2& e : cpuid) {
      if (e.function != 0x4 || (e.eax & 0x1F) == 0) continue;
      uint32_t level = (e.eax >> 5) & 0x7;
      uint32_t sharing = level >= 3 ? (1u << bits) - 1 : 0;
      uint32_t cores = std::min<uint32_t>((1u << bits) - 1, 63);
      e.eax = (e.eax & 0x3FFF) | ((sharing & 0xFFF) << 14) | (cores << 26);
    }
  }
  SetExtendedTopology(cpuid, 0xB, n);
  SetExtendedTopology(cpuid, 0x1F, n);

  if (vendor == CpuVendor::kAmd) {
    if (kvm_cpuid_entry2* e = Find(cpuid, 0x80000001)) {
      SetBit(e->ecx, 1, n > 1);  // CmpLegacy: HTT counts cores
    }
    if (kvm_cpuid_entry2* e = Find(cpuid, 0x80000008)) {
      // ApicIdCoreIdSize [15:12], NC [7:0] = cores - 1.
      e->ecx = (e->ecx & ~0xF0FFu) | (bits << 12) | ((n - 1) & 0xFF);
    }
    if (kvm_cpuid_entry2* e = Find(cpuid, 0x8000001E)) {
      // One thread per compute unit, one node. EAX/EBX are per VP.
      e->ebx = 0;
      e->ecx = 0;
      e->edx = 0;
    }
  }

  // KVM leaves: the base leaf's EAX is the highest leaf in the range; the
  // timing leaf sits at base + 0x10.
  if (!config.kvm_leaves) {
    SetCpuidApicId(cpuid, 0);
    return cpuid;
  }
  if (kvm_cpuid_entry2* features = Find(cpuid, config.kvm_leaf_base + 1)) {
    // Paravirtual features that need userspace support hvstack does not have:
    // MSI_EXT_DEST_ID 15 (extended destination ids in our MSI routing),
    // HC_MAP_GPA_RANGE 16 (hypercall exits to userspace), MIGRATION_CONTROL
    // 17 (MSR exits to userspace). kvm-clock (CLOCKSOURCE 0, CLOCKSOURCE2 3,
    // CLOCKSOURCE_STABLE_BIT 24) and the rest are in-kernel.
    ClearBits(features->eax, {15, 16, 17});
  }
  if (kvm_cpuid_entry2* base = Find(cpuid, config.kvm_leaf_base)) {
    if (config.tsc_khz != 0) {
      base->eax = config.kvm_leaf_base + 0x10;
      cpuid.push_back(Entry(config.kvm_leaf_base + 0x10, 0, 0, config.tsc_khz,
                            kKvmApicBusKhz, 0, 0));
    } else {
      base->eax = config.kvm_leaf_base + 1;
    }
  }
  SetCpuidApicId(cpuid, 0);
  return cpuid;
}

void SetCpuidApicId(std::vector<kvm_cpuid_entry2>& cpuid, uint32_t index) {
  for (kvm_cpuid_entry2& e : cpuid) {
    if (e.function == 0x1) e.ebx = (e.ebx & 0x00FFFFFF) | (index << 24);
    if (e.function == 0xB || e.function == 0x1F) e.edx = index;
    if (e.function == 0x8000001E) {
      e.eax = index;                              // extended APIC id
      e.ebx = (e.ebx & ~0xFFu) | (index & 0xFF);  // compute unit id
    }
  }
}

}  // namespace hvcore

namespace hvcore {
namespace {

bool SameLeaf(const kvm_cpuid_entry2& a, const kvm_cpuid_entry2& b) {
  if (a.function != b.function) return false;
  const bool indexed = (a.flags | b.flags) & KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  return !indexed || a.index == b.index;
}

std::string LeafName(const kvm_cpuid_entry2& e) {
  return absl::StrFormat("CPUID leaf 0x%x index %d", e.function, e.index);
}

}  // namespace

absl::Status CompareCpuid(std::span<const kvm_cpuid_entry2> saved,
                          std::span<const kvm_cpuid_entry2> current) {
  for (const kvm_cpuid_entry2& s : saved) {
    const kvm_cpuid_entry2* c = nullptr;
    for (const kvm_cpuid_entry2& e : current) {
      if (SameLeaf(s, e)) {
        c = &e;
        break;
      }
    }
    if (c == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          LeafName(s), ": the saved guest saw it, this host does not give it"));
    }
    const struct {
      const char* name;
      uint32_t saved, current;
    } regs[] = {{"EAX", s.eax, c->eax},
                {"EBX", s.ebx, c->ebx},
                {"ECX", s.ecx, c->ecx},
                {"EDX", s.edx, c->edx}};
    for (const auto& r : regs) {
      if (r.saved != r.current) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "%s %s: the saved guest saw 0x%x, this host gives 0x%x",
            LeafName(s), r.name, r.saved, r.current));
      }
    }
  }
  for (const kvm_cpuid_entry2& c : current) {
    bool found = false;
    for (const kvm_cpuid_entry2& s : saved) found = found || SameLeaf(s, c);
    if (!found) {
      return absl::FailedPreconditionError(absl::StrCat(
          LeafName(c), ": this host gives it, the saved guest did not see it"));
    }
  }
  return absl::OkStatus();
}

}  // namespace hvcore
