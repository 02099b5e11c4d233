"""Network boot of the provisioning ramdisk: the service network's boot server
(dnsmasq: DHCP reservations, TFTP for iPXE), the iPXE scripts the controller serves,
and the ramdisk itself (a Debian kernel and an initramfs that runs `metalnet agent`).
"""
