#ifndef HVSTACK_VMWP_ACPI_RESOURCE_TEMPLATE_H_
#define HVSTACK_VMWP_ACPI_RESOURCE_TEMPLATE_H_

#include <cstdint>
#include <vector>

#include "vmwp/acpi/aml.h"

// ACPI resource descriptors (ACPI 6.x, 6.4) for _CRS: the two small descriptors
// legacy PC devices need, and the buffer that wraps them.
namespace vmwp::acpi::aml {

// IO(Decode16, base, base, 1, length): a fixed range of I/O ports.
Term IoPorts(uint16_t base, uint8_t length);

// IRQNoFlags() {irqs...}: ISA IRQs 0-15, edge-triggered, active-high,
// exclusive.
Term IrqNoFlags(const std::vector<uint8_t>& irqs);

// ResourceTemplate() { descriptors }: a Buffer holding the descriptors and the
// End Tag, whose checksum makes the whole template sum to zero.
Term ResourceTemplate(const std::vector<Term>& descriptors);

}  // namespace vmwp::acpi::aml

#endif  // HVSTACK_VMWP_ACPI_RESOURCE_TEMPLATE_H_
