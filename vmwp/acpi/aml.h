#ifndef HVSTACK_VMWP_ACPI_AML_H_
#define HVSTACK_VMWP_ACPI_AML_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "vmwp/acpi/bytes.h"

// A small AML encoder (ACPI 6.x, chapter 20): just the terms our DSDT needs.
// Each function returns the encoding of one term; terms nest by passing results
// to their parents, and the first error anywhere in a tree comes out at the
// top, so a DSDT reads like its ASL.
namespace vmwp::acpi::aml {

using Term = absl::StatusOr<Bytes>;

// The largest value a PkgLength can hold (28 bits). It counts its own bytes
// too.
inline constexpr size_t kMaxPkgLength = (size_t{1} << 28) - 1;

// The PkgLength encoding for a package whose contents (after the PkgLength) are
// `content_length` bytes: 1 byte up to 63 in total, else a lead byte giving the
// count of following bytes (1-3) and the low 4 bits, then the rest 8 bits at a
// time.
absl::StatusOr<Bytes> PkgLength(size_t content_length);

// A NameString: "_S5_", "COM1", "\\_SB_" or a dotted path "\\_SB_.COM1".
// Segments shorter than four characters are padded with '_' as ASL does ("_S5"
// is "_S5_").
Term NameString(absl::string_view path);

// An integer constant in the shortest form: Zero, One, Ones, or a
// Byte/Word/DWord/QWord prefix.
Bytes Integer(uint64_t value);

// A NUL-terminated ASCII string constant. Rejects NULs and non-ASCII.
Term String(absl::string_view text);

// A compressed EISA id ("PNP0501") as ASL's EISAID() makes it: three upper-case
// letters and four hex digits packed into a DWord.
Term EisaId(absl::string_view id);

// Name(name, object)
Term Name(absl::string_view name, const Term& object);

// Package(N) { elements } with N = elements.size() (at most 255).
Term Package(const std::vector<Term>& elements);

// Buffer(N) { data }
Term Buffer(const Bytes& data);

// Scope(path) { terms } and Device(name) { terms }.
Term Scope(absl::string_view path, const std::vector<Term>& terms);
Term Device(absl::string_view name, const std::vector<Term>& terms);

}  // namespace vmwp::acpi::aml

#endif  // HVSTACK_VMWP_ACPI_AML_H_
