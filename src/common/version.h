/*
 * The gateway's version: what `modelswitch --version` prints and GET /metrics reports
 * (modelswitch_build_info), kept in one place so the two never disagree.
 */
#ifndef MS_VERSION_H
#define MS_VERSION_H

#define MS_VERSION "0.1.0"

#endif
