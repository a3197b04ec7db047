"""An osquery extension serving this project's tables (``unix_socket_peers``,
``process_stdio``) to a real osqueryd through osquery-python.

``fleetctl extension --socket /var/osquery/osquery.em`` registers and serves them;
``plugins`` holds the TablePlugin classes, ``server`` the Thrift side.
"""
