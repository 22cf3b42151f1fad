/* The node agent (`skiff agent`): registers this host as an ECS container
 * instance, receives work over the /acs/poll channel, runs tasks as runc
 * containers, and reports state through the ECS API. */
#pragma once

int agent_main(int argc, char **argv);
/* `skiff image-pull`: the worker process the agent starts for each pull. */
int agent_image_pull_main(int argc, char **argv);
