/* The one declaration from the macOS SDK's <mach/mach_vm.h> that Go
 * dependencies compiled with cgo need (prometheus/client_golang's process
 * collector), for cross builds with zig, whose macOS headers lack this file.
 * The function itself is in libSystem, which zig links. */
#ifndef DS_RELEASE_MACH_VM_H
#define DS_RELEASE_MACH_VM_H
#include <mach/mach_types.h>
#include <mach/vm_region.h>
#include <mach/message.h>

extern kern_return_t mach_vm_region(vm_map_t target_task, mach_vm_address_t *address,
                                    mach_vm_size_t *size, vm_region_flavor_t flavor,
                                    vm_region_info_t info, mach_msg_type_number_t *info_count,
                                    mach_port_t *object_name);
#endif
