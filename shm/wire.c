/* wire.c: names of the wire protocol's enums, for JSON and logs. */
#include "wire.h"

const char *skv_wire_finish_name(uint32_t finish)
{
	switch (finish) {
	case SKV_WIRE_FINISH_STOP:
		return "stop";
	case SKV_WIRE_FINISH_LENGTH:
		return "length";
	case SKV_WIRE_FINISH_CANCELLED:
		return "cancelled";
	case SKV_WIRE_FINISH_ERROR:
		return "error";
	}
	return "unknown";
}

const char *skv_wire_error_name(uint32_t error)
{
	switch (error) {
	case SKV_WIRE_ERR_NONE:
		return "none";
	case SKV_WIRE_ERR_INVALID:
		return "invalid_request";
	case SKV_WIRE_ERR_CONTEXT:
		return "context_length_exceeded";
	case SKV_WIRE_ERR_BUSY:
		return "busy";
	case SKV_WIRE_ERR_WORKER_LOST:
		return "worker_lost";
	case SKV_WIRE_ERR_SHUTTING_DOWN:
		return "shutting_down";
	case SKV_WIRE_ERR_TIMEOUT:
		return "timeout";
	case SKV_WIRE_ERR_INTERNAL:
		return "internal";
	}
	return "unknown";
}
