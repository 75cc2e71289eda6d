/* SPDX-License-Identifier: Apache-2.0 */
/* The fleet (fleet.h). */
#include "fleet/fleet.h"
