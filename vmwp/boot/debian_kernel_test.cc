// Loads Debian's cloud kernel, as tests/linux/fetch_kernel.sh caches it, into
// guest memory as a bzImage and as a vmlinux with its PVH entry, and checks
// the zero page and the start_info the guest would see. No VM runs here.
//
// Where the kernel is looked for, first hit wins:
//   $HVSTACK_KERNEL_DIR          a fetch_kernel.sh OUT_DIR (vmlinuz, vmlinux)
//   $HVSTACK_KERNEL_CACHE, /var/tmp/hvstack/kernel, ~/.cache/hvstack/kernel
//                                fetch_kernel.sh's cache (newest version)
// Without one the tests skip and say how to fetch it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "vmwp/boot/boot_image.h"
#include "vmwp/loader/start_info.h"
#include "vmwp/loader/zero_page.h"

namespace vmwp {

using kernel_probe::KernelFormat;

namespace {

namespace fs = std::filesystem;

struct DebianKernel {
  std::string vmlinuz;
  std::string vmlinux;
};

std::optional<DebianKernel> FindInCache(const fs::path& cache) {
  std::error_code ec;
  if (!fs::is_directory(cache, ec)) return std::nullopt;
  std::vector<fs::path> versions;
  for (const fs::directory_entry& e : fs::directory_iterator(cache, ec)) {
    if (e.is_directory() &&
        e.path().filename().string().rfind("linux-image-", 0) == 0 &&
        fs::exists(e.path() / "vmlinux")) {
      versions.push_back(e.path());
    }
  }
  std::sort(versions.begin(), versions.end());
  for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
    for (const fs::directory_entry& e :
         fs::directory_iterator(*it / "root" / "boot", ec)) {
      if (e.path().filename().string().rfind("vmlinuz-", 0) == 0)
        return DebianKernel{e.path().string(), (*it / "vmlinux").string()};
    }
  }
  return std::nullopt;
}

std::optional<DebianKernel> FindDebianKernel() {
  if (const char* dir = std::getenv("HVSTACK_KERNEL_DIR")) {
    const fs::path d(dir);
    if (fs::exists(d / "vmlinuz") && fs::exists(d / "vmlinux"))
      return DebianKernel{(d / "vmlinuz").string(), (d / "vmlinux").string()};
  }
  std::vector<fs::path> caches;
  if (const char* c = std::getenv("HVSTACK_KERNEL_CACHE")) caches.push_back(c);
  caches.push_back("/var/tmp/hvstack/kernel");
  if (const passwd* pw = getpwuid(getuid()); pw && pw->pw_dir)
    caches.push_back(fs::path(pw->pw_dir) / ".cache/hvstack/kernel");
  for (const fs::path& c : caches) {
    if (std::optional<DebianKernel> k = FindInCache(c)) return k;
  }
  return std::nullopt;
}

constexpr char kSkip[] =
    "Debian's kernel is not cached; fetch it once with `bazel test "
    "//tests/linux:fetch_kernel_test` (or tests/linux/fetch_kernel.sh DIR and "
    "HVSTACK_KERNEL_DIR=DIR)";

std::unique_ptr<vid::GuestMemory> Memory(uint64_t bytes) {
  absl::StatusOr<std::unique_ptr<vid::GuestMemory>> m =
      vid::GuestMemory::Create(bytes);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : nullptr;
}

template <typename T>
T Read(const vid::GuestMemory& memory, uint64_t gpa) {
  absl::StatusOr<T> v = memory.ReadObject<T>(gpa);
  EXPECT_TRUE(v.ok()) << v.status();
  return v.value_or(T{});
}

std::string FileBytes(const std::string& path, uint64_t offset, size_t n) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  std::string s(n, '\0');
  in.read(s.data(), static_cast<std::streamsize>(n));
  return s;
}

std::string MemoryBytes(const vid::GuestMemory& memory, uint64_t gpa,
                        size_t n) {
  std::string s(n, '\0');
  EXPECT_TRUE(memory.Read(gpa, {reinterpret_cast<uint8_t*>(s.data()), n}).ok());
  return s;
}

std::string WriteInitrd() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(tmp ? tmp : "/tmp") + "/initrd.img";
  std::ofstream(path, std::ios::binary) << std::string(300000, 'I');
  return path;
}

constexpr uint64_t kRam = 256ull << 20;
constexpr char kCmdline[] = "console=ttyS0 earlyprintk=ttyS0 panic=-1";

TEST(DebianKernelTest, BzImage) {
  std::optional<DebianKernel> k = FindDebianKernel();
  if (!k) GTEST_SKIP() << kSkip;
  auto memory = Memory(kRam);
  ASSERT_NE(memory, nullptr);
  BootSpec spec{.kernel_path = k->vmlinuz,
                .initrd_path = WriteInitrd(),
                .cmdline = kCmdline};
  spec.acpi.vcpu_count = 2;
  absl::StatusOr<BootImage> boot = LoadBootImage(spec, *memory);
  ASSERT_TRUE(boot.ok()) << boot.status();
  std::cout << k->vmlinuz << ": " << DescribeBootImage(*boot) << "\n";
  EXPECT_EQ(boot->format, KernelFormat::kBzImage);
  EXPECT_EQ(boot->mode, BootEntryMode::kLongMode64);

  // The header as the file has it, then the loader's fields.
  const uint64_t zp = boot->boot_params_gpa;
  EXPECT_EQ(zp, 0x7000u);
  const std::string header = FileBytes(k->vmlinuz, 0x1F1, 0x26C - 0x1F1);
  std::string copied = MemoryBytes(*memory, zp + 0x1F1, header.size());
  // Bytes the loader fills in differ; everything else is the kernel's.
  for (size_t off : {0x210, 0x211, 0x218, 0x219, 0x21A, 0x21B, 0x21C, 0x21D,
                     0x21E, 0x21F, 0x224, 0x225, 0x228, 0x229, 0x22A, 0x22B}) {
    copied[off - 0x1F1] = header[off - 0x1F1];
  }
  EXPECT_EQ(copied, header);
  EXPECT_EQ(MemoryBytes(*memory, zp + 0x202, 4), "HdrS");
  const uint16_t version = Read<uint16_t>(*memory, zp + 0x206);
  EXPECT_GE(version, 0x020C);
  EXPECT_EQ(Read<uint8_t>(*memory, zp + 0x210), 0xFF);
  EXPECT_EQ(Read<uint8_t>(*memory, zp + 0x211) & 0x81, 0x81);
  EXPECT_EQ(Read<uint16_t>(*memory, zp + 0x224), 0xFE00);
  EXPECT_EQ(Read<uint32_t>(*memory, zp + 0x228), 0x20000u);
  EXPECT_EQ(MemoryBytes(*memory, 0x20000, sizeof(kCmdline)),
            std::string(kCmdline, sizeof(kCmdline)));
  EXPECT_EQ(Read<uint32_t>(*memory, zp + 0x218), boot->initrd_gpa);
  EXPECT_EQ(Read<uint32_t>(*memory, zp + 0x21C), 300000u);
  EXPECT_EQ(Read<uint64_t>(*memory, zp + 0x070), boot->rsdp_gpa);
  EXPECT_EQ(MemoryBytes(*memory, boot->rsdp_gpa, 8), "RSD PTR ");

  // Loaded at pref_address, entered 0x200 later; the initrd is above
  // init_size's end and below initrd_addr_max.
  const uint64_t pref = Read<uint64_t>(*memory, zp + 0x258);
  const uint32_t init_size = Read<uint32_t>(*memory, zp + 0x260);
  const uint32_t initrd_max = Read<uint32_t>(*memory, zp + 0x22C);
  EXPECT_EQ(boot->entry, pref + 0x200);
  EXPECT_EQ(boot->kernel_end, pref + init_size);
  EXPECT_GE(boot->initrd_gpa, boot->kernel_end);
  EXPECT_EQ(boot->initrd_gpa % 4096, 0u);
  EXPECT_LE(boot->initrd_gpa + boot->initrd_size - 1, initrd_max);
  const uint64_t setup_bytes =
      (uint64_t{Read<uint8_t>(*memory, zp + 0x1F1)} + 1) * 512;
  EXPECT_EQ(MemoryBytes(*memory, pref, 4096),
            FileBytes(k->vmlinuz, setup_bytes, 4096));

  // e820 in the zero page.
  ASSERT_EQ(Read<uint8_t>(*memory, zp + 0x1E8), boot->e820.size());
  for (size_t i = 0; i < boot->e820.size(); ++i) {
    const uint64_t at = zp + 0x2D0 + i * 20;
    EXPECT_EQ(
        (E820Entry{Read<uint64_t>(*memory, at), Read<uint64_t>(*memory, at + 8),
                   Read<uint32_t>(*memory, at + 16)}),
        boot->e820[i]);
  }
  EXPECT_EQ(boot->e820.back(),
            (E820Entry{0x100000, kRam - 0x100000, E820Entry::kRam}));
}

TEST(DebianKernelTest, VmlinuxThroughPvh) {
  std::optional<DebianKernel> k = FindDebianKernel();
  if (!k) GTEST_SKIP() << kSkip;
  auto memory = Memory(kRam);
  ASSERT_NE(memory, nullptr);
  BootSpec spec{.kernel_path = k->vmlinux,
                .initrd_path = WriteInitrd(),
                .cmdline = kCmdline};
  spec.acpi.vcpu_count = 2;
  absl::StatusOr<BootImage> boot = LoadBootImage(spec, *memory);
  ASSERT_TRUE(boot.ok()) << boot.status();
  std::cout << k->vmlinux << ": " << DescribeBootImage(*boot) << "\n";
  EXPECT_EQ(boot->format, KernelFormat::kElfPvh);
  EXPECT_EQ(boot->mode, BootEntryMode::kProtectedMode32);
  EXPECT_GE(boot->entry, boot->kernel_start);
  EXPECT_LT(boot->entry, boot->kernel_end);
  EXPECT_EQ(boot->kernel_start, 0x1000000u);  // CONFIG_PHYSICAL_START

  const uint64_t si = boot->boot_params_gpa;
  EXPECT_EQ(si, pvh::kStartInfoAddress);
  EXPECT_EQ(Read<uint32_t>(*memory, si + pvh::kMagic), 0x336ec578u);
  EXPECT_EQ(Read<uint32_t>(*memory, si + pvh::kVersion), 1u);
  EXPECT_EQ(Read<uint64_t>(*memory, si + pvh::kCmdlinePaddr), 0x20000u);
  EXPECT_EQ(Read<uint64_t>(*memory, si + pvh::kRsdpPaddr), boot->rsdp_gpa);
  EXPECT_EQ(Read<uint32_t>(*memory, si + pvh::kNrModules), 1u);
  const uint64_t mod = Read<uint64_t>(*memory, si + pvh::kModlistPaddr);
  EXPECT_EQ(Read<uint64_t>(*memory, mod), boot->initrd_gpa);
  EXPECT_EQ(Read<uint64_t>(*memory, mod + 8), 300000u);
  EXPECT_GE(boot->initrd_gpa, boot->kernel_end);
  const uint64_t memmap = Read<uint64_t>(*memory, si + pvh::kMemmapPaddr);
  ASSERT_EQ(Read<uint32_t>(*memory, si + pvh::kMemmapEntries),
            boot->e820.size());
  for (size_t i = 0; i < boot->e820.size(); ++i) {
    const uint64_t at = memmap + i * pvh::kMemmapEntryBytes;
    EXPECT_EQ(
        (E820Entry{Read<uint64_t>(*memory, at), Read<uint64_t>(*memory, at + 8),
                   Read<uint32_t>(*memory, at + 16)}),
        boot->e820[i]);
  }
  // The first PT_LOAD (file offset 0x200000 in Debian's vmlinux) is in place.
  EXPECT_EQ(MemoryBytes(*memory, 0x1000000, 4096),
            FileBytes(k->vmlinux, 0x200000, 4096));
}

TEST(DebianKernelTest, VmlinuxThrough64BitEntry) {
  std::optional<DebianKernel> k = FindDebianKernel();
  if (!k) GTEST_SKIP() << kSkip;
  auto memory = Memory(kRam);
  ASSERT_NE(memory, nullptr);
  BootSpec spec{.kernel_path = k->vmlinux, .cmdline = kCmdline};
  spec.use_pvh_entry = false;
  absl::StatusOr<BootImage> boot = LoadBootImage(spec, *memory);
  ASSERT_TRUE(boot.ok()) << boot.status();
  EXPECT_EQ(boot->mode, BootEntryMode::kLongMode64);
  EXPECT_EQ(boot->entry, 0x1000000u);  // phys_startup_64
  EXPECT_EQ(Read<uint32_t>(*memory, 0x7000 + 0x228), 0x20000u);
}

}  // namespace
}  // namespace vmwp
