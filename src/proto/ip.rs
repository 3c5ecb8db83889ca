//! IPv4 / IPv6 with TCP / UDP: the flow tuple and the L4 payload of a packet as NFQUEUE hands it
//! over (an L3 packet, no link-layer header).
//! TO BE WRITTEN (parsers helper).
