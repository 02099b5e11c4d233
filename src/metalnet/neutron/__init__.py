"""Neutron ML2 mechanism driver: OpenStack bare-metal ports bound through metalnet.

Installed with the optional extra `metalnet[neutron]` and loaded by Neutron from the
entry point group `neutron.ml2.mechanism_drivers` under the name `metalnet`. Only this
package imports Neutron; the driver talks to a metalnet controller over its REST API
(`/v1/attachments`), so metalnet's isolation guard and per-switch queue decide and
batch every port Neutron binds. Configuration: `config.py`; behaviour: `mech_driver.py`.
"""
